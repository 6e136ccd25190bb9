"""The server's composition root: its non-HTTP state and the services that run beside the API.

``fedseg serve`` builds a :class:`Server` (settings, database, instance and model stores), hands
it to the API (:func:`service.api.main.create_app`, whose :class:`~service.api.state.ServerState`
adds the HTTP half) and starts the background services defined here: the in-process worker
(jobs, deliveries, retention) and the DIMSE SCP. ``fedseg worker`` uses the same pieces without
the API. The packages wired here (``service.jobs``, ``service.delivery``, ``service.dimse``)
never import ``service.api``; ``tests/test_layering.py`` checks that.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db.engine import make_engine, session_factory
from service.delivery.dispatcher import DeliveryPolicy, deliver_due, schedule
from service.dimse.scp import ScpConfig, start_scp, tls_context
from service.errors import ConfigurationError
from service.inference.store import ModelStore
from service.jobs.queue import QueuePolicy
from service.jobs.routing import rule_source
from service.jobs.runner import isolated_segment_runner
from service.jobs.worker import JobRunner, WorkerContext, work_forever
from service.segment import SegmentOptions
from service.storage.retention import RetentionPolicy, purge_expired
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

#: How often the retention purge runs (between worker polls).
RETENTION_INTERVAL_S = 3600.0


@dataclass
class Server:
    """What every part of a running server shares: settings, database and stores."""

    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: InstanceStore
    models: ModelStore
    results_root: Path
    #: Called with each job id whose results the retention purge removed (e.g. to drop caches).
    purge_listeners: list[Callable[[str], None]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Open the database and stores named by ``settings`` (no migration: see db.migrate)."""
        engine = make_engine(settings.resolved_database_url())
        return cls(
            settings=settings,
            engine=engine,
            factory=session_factory(engine),
            store=InstanceStore(settings.state_dir / "instances"),
            models=ModelStore(roots=(settings.model_store, settings.shipped_models)),
            results_root=settings.state_dir / "results",
        )

    @property
    def policy(self) -> QueuePolicy:
        """The queue policy from the settings."""
        return QueuePolicy(
            lease_s=self.settings.job_lease_s, max_attempts=self.settings.job_max_attempts
        )


#: A service started with the server (worker thread, DIMSE SCP); it returns its stopper.
Background = Callable[[Server], Callable[[], None]]


def worker_context(server: Server, runner: JobRunner) -> WorkerContext:
    """A worker context whose successes schedule deliveries to the configured destinations."""
    settings = server.settings
    return WorkerContext(
        factory=server.factory,
        store=server.store,
        results_root=server.results_root,
        runner=runner,
        policy=server.policy,
        quiet_period_s=settings.quiet_period_s,
        after_success=lambda job_id: schedule(server.factory, job_id, settings.destinations),
    )


def delivery_step(server: Server) -> Callable[[], None]:
    """One pass over due deliveries (run between worker polls)."""
    settings = server.settings
    policy = DeliveryPolicy(
        max_attempts=settings.delivery_max_attempts,
        retry_s=settings.delivery_retry_s,
        calling_ae=settings.dicom_ae_title,
    )

    def step() -> None:
        deliver_due(server.factory, server.store, settings.destinations, policy)

    return step


def retention_step(server: Server, interval_s: float = RETENTION_INTERVAL_S) -> Callable[[], None]:
    """Purge expired studies, at most once per ``interval_s`` (the first call purges)."""
    policy = RetentionPolicy(days=server.settings.retention_days)
    last: list[float] = []

    def step() -> None:
        now = time.monotonic()
        if last and now - last[0] < interval_s:
            return
        last[:] = [now]
        report = purge_expired(server.factory, server.store, server.results_root, policy)
        for job_id in report.job_ids:
            for listener in server.purge_listeners:
                listener(job_id)

    return step


def idle_step(server: Server) -> Callable[[], None]:
    """What a worker does between polls: due deliveries, then (hourly) retention."""
    steps = (delivery_step(server), retention_step(server))

    def step() -> None:
        for run in steps:
            run()

    return step


def worker_service(runner: JobRunner) -> Background:
    """A background service running one worker thread (with deliveries) for the server."""

    def start(server: Server) -> Callable[[], None]:
        stop = threading.Event()
        ctx = worker_context(server, runner)
        thread = threading.Thread(
            target=work_forever,
            args=(ctx, stop, server.settings.worker_poll_s, idle_step(server)),
            name="fedseg-worker",
            daemon=True,
        )
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=60)

        return halt

    return start


def segment_service(options: SegmentOptions | None = None) -> Background:
    """A worker thread running the real pipeline with the routing rules of the database.

    Each job runs in a child process under the job memory limit (:mod:`service.jobs.isolation`).
    """

    def start(server: Server) -> Callable[[], None]:
        rules = rule_source(server.factory)
        runner = isolated_segment_runner(server.settings, options, rules)
        runner.start_fork_server()
        return worker_service(runner)(server)

    return start


def _dimse_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.dicom_tls_certfile is None and settings.dicom_tls_keyfile is None:
        return None
    if settings.dicom_tls_certfile is None or settings.dicom_tls_keyfile is None:
        raise ConfigurationError("DICOM TLS needs both FEDSEG_DICOM_TLS_CERTFILE and _KEYFILE")
    return tls_context(
        settings.dicom_tls_certfile, settings.dicom_tls_keyfile, settings.dicom_tls_cafile
    )


def scp_service(server: Server) -> Callable[[], None]:
    """Start the DIMSE SCP when AE titles are allowed; otherwise log why it is off."""
    settings = server.settings
    if not settings.dicom_allowed_aes or settings.dicom_port == 0:
        logger.warning("DICOM SCP off: set FEDSEG_DICOM_ALLOWED_AES to accept C-STORE")
        return lambda: None
    config = ScpConfig(
        settings.dicom_ae_title,
        settings.api_host,
        settings.dicom_port,
        tuple(settings.dicom_allowed_aes),
        min_free_bytes=settings.min_free_bytes,
        max_decoded_bytes=settings.max_decoded_instance_bytes,
        tls=_dimse_tls(settings),
        max_associations=settings.dicom_max_associations,
        max_associations_per_peer=settings.dicom_max_associations_per_peer,
        acse_timeout_s=settings.dicom_acse_timeout_s,
        network_timeout_s=settings.dicom_network_timeout_s,
    )
    return start_scp(config, server.factory, server.store)
