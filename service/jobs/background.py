"""Background services of ``fedseg serve``: an in-process worker thread and the DIMSE SCP."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

from service.api.state import ServerState
from service.config import Settings
from service.delivery.dispatcher import DeliveryPolicy, deliver_due, schedule
from service.dimse.scp import ScpConfig, start_scp, tls_context
from service.errors import ConfigurationError
from service.jobs.routing import rule_source
from service.jobs.runner import segment_runner
from service.jobs.worker import JobRunner, WorkerContext, work_forever
from service.segment import SegmentOptions
from service.storage.retention import RetentionPolicy, purge_expired

logger = logging.getLogger(__name__)

#: How often the retention purge runs (between worker polls).
RETENTION_INTERVAL_S = 3600.0


def worker_context(state: ServerState, runner: JobRunner) -> WorkerContext:
    """A worker context whose successes schedule deliveries to the configured destinations."""
    settings = state.settings
    return WorkerContext(
        factory=state.factory,
        store=state.store,
        results_root=state.results_root,
        runner=runner,
        policy=state.policy,
        quiet_period_s=settings.quiet_period_s,
        after_success=lambda job_id: schedule(state.factory, job_id, settings.destinations),
    )


def delivery_step(state: ServerState) -> Callable[[], None]:
    """One pass over due deliveries (run between worker polls)."""
    settings = state.settings
    policy = DeliveryPolicy(
        max_attempts=settings.delivery_max_attempts,
        retry_s=settings.delivery_retry_s,
        calling_ae=settings.dicom_ae_title,
    )

    def step() -> None:
        deliver_due(state.factory, state.store, settings.destinations, policy)

    return step


def retention_step(
    state: ServerState, interval_s: float = RETENTION_INTERVAL_S
) -> Callable[[], None]:
    """Purge expired studies, at most once per ``interval_s`` (the first call purges)."""
    policy = RetentionPolicy(days=state.settings.retention_days)
    last: list[float] = []

    def step() -> None:
        now = time.monotonic()
        if last and now - last[0] < interval_s:
            return
        last[:] = [now]
        report = purge_expired(state.factory, state.store, state.results_root, policy)
        for job_id in report.job_ids:
            state.viewer.drop(job_id)

    return step


def idle_step(state: ServerState) -> Callable[[], None]:
    """What a worker does between polls: due deliveries, then (hourly) retention."""
    steps = (delivery_step(state), retention_step(state))

    def step() -> None:
        for run in steps:
            run()

    return step


def worker_service(runner: JobRunner) -> Callable[[ServerState], Callable[[], None]]:
    """A background service running one worker thread (with deliveries) for the app."""

    def start(state: ServerState) -> Callable[[], None]:
        stop = threading.Event()
        ctx = worker_context(state, runner)
        thread = threading.Thread(
            target=work_forever,
            args=(ctx, stop, state.settings.worker_poll_s, idle_step(state)),
            name="fedseg-worker",
            daemon=True,
        )
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(timeout=60)

        return halt

    return start


def segment_service(
    options: SegmentOptions | None = None,
) -> Callable[[ServerState], Callable[[], None]]:
    """A worker thread running the real pipeline, with the routing rules of the app's database."""

    def start(state: ServerState) -> Callable[[], None]:
        runner = segment_runner(state.settings, options, rules=rule_source(state.factory))
        return worker_service(runner)(state)

    return start


def _dimse_tls(settings: Settings) -> ssl.SSLContext | None:
    if settings.dicom_tls_certfile is None and settings.dicom_tls_keyfile is None:
        return None
    if settings.dicom_tls_certfile is None or settings.dicom_tls_keyfile is None:
        raise ConfigurationError("DICOM TLS needs both FEDSEG_DICOM_TLS_CERTFILE and _KEYFILE")
    return tls_context(
        settings.dicom_tls_certfile, settings.dicom_tls_keyfile, settings.dicom_tls_cafile
    )


def scp_service(state: ServerState) -> Callable[[], None]:
    """Start the DIMSE SCP when AE titles are allowed; otherwise log why it is off."""
    settings = state.settings
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
    )
    return start_scp(config, state.factory, state.store)
