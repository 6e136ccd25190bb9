"""What the running API holds: settings, database, stores (kept on ``app.state``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.api.slice_stack import StackCache
from service.config import Settings
from service.db.engine import make_engine, session_factory
from service.inference.store import ModelStore
from service.jobs.queue import QueuePolicy
from service.storage.store import InstanceStore


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
class ServerState:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: InstanceStore
    models: ModelStore
    results_root: Path
    metrics: Metrics
    #: Display stacks of the dashboard's slice viewer.
    viewer: StackCache = field(default_factory=StackCache)

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerState:
        """Open the database and stores named by ``settings``."""
        engine = make_engine(settings.resolved_database_url())
        return cls(
            settings=settings,
            engine=engine,
            factory=session_factory(engine),
            store=InstanceStore(settings.state_dir / "instances"),
            models=ModelStore(roots=(settings.model_store, settings.shipped_models)),
            results_root=settings.state_dir / "results",
            metrics=Metrics(),
        )

    @property
    def policy(self) -> QueuePolicy:
        """The queue policy from the settings."""
        return QueuePolicy(
            lease_s=self.settings.job_lease_s, max_attempts=self.settings.job_max_attempts
        )
