"""What the running API holds: the server's state plus its HTTP half (kept on ``app.state``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from service.api.slice_stack import StackCache
from service.server import Server


@dataclass
class Metrics:
    """The API's Prometheus metrics, in a registry of their own (no process globals)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "fedseg_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.instances = Counter(
            "fedseg_instances_received",
            "DICOM instances stored",
            ["via", "outcome"],
            registry=self.registry,
        )


@dataclass
class ServerState(Server):
    """Everything a request handler needs: the :class:`~service.server.Server`, metrics, caches.

    Built once per app by :meth:`Server.from_settings` (which this class inherits).
    """

    metrics: Metrics = field(default_factory=Metrics)
    #: Display stacks of the dashboard's slice viewer.
    viewer: StackCache = field(default_factory=StackCache)

    def __post_init__(self) -> None:
        # A purged job's display stacks go with its results.
        self.purge_listeners.append(self.viewer.drop)

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base that RetrieveURL and BulkDataURI values start with.

        Built from the configured public URL (:meth:`Settings.resolved_public_url`), never from
        the request: a forged ``Host`` header must not reach a URL a client will follow.
        """
        return f"{self.settings.resolved_public_url()}/dicomweb"
