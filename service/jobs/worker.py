"""The worker: claims jobs, runs the segmentation, stores results and schedules delivery.

The segmentation itself is a :class:`JobRunner` passed in, so the queue mechanics are tested
with small runners and the server uses :func:`service.jobs.runner.isolated_segment_runner`
(each job in a child process under a memory limit). How failures are retried:
:mod:`service.jobs.failures`.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Instance, InstanceOrigin, Job
from service.errors import FedsegError
from service.jobs import queue
from service.jobs.failures import (
    JobOutOfMemoryError,
    JobProcessError,
    is_out_of_memory,
    out_of_memory_text,
)
from service.jobs.intake import enqueue_quiet_studies
from service.library_logging import library_message
from service.results.kinds import ResultKind
from service.storage.ingest import ingest
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

#: Reports progress: stage name and fraction done (0..1).
Progress = Callable[[str, float], None]


class JobRunner(Protocol):
    """Segments a study: reads ``inputs``, writes results under ``out_dir``."""

    def __call__(self, inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        """Run; raise :class:`~service.errors.FedsegError` for input the job cannot use."""


@dataclass
class WorkerContext:
    """What a worker needs: database, stores, policy and the runner."""

    factory: sessionmaker[Session]
    store: InstanceStore
    results_root: Path
    runner: JobRunner
    policy: queue.QueuePolicy = field(default_factory=queue.QueuePolicy)
    quiet_period_s: float = 30.0
    after_success: Callable[[str], None] | None = None
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")


class _Heartbeat(threading.Thread):
    """Extends the lease while the runner works, carrying the latest progress."""

    def __init__(self, ctx: WorkerContext, job_id: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id[:8]}")
        self.ctx, self.job_id = ctx, job_id
        self.progress: dict[str, float] = {}
        self.stopped = threading.Event()
        self.lost = False

    def report(self, stage: str, fraction: float) -> None:
        self.progress[stage] = round(float(fraction), 4)

    def run(self) -> None:
        interval = self.ctx.policy.lease_s / 3
        while not self.stopped.wait(interval):
            if not queue.heartbeat(
                self.ctx.factory,
                self.job_id,
                self.ctx.worker_id,
                self.ctx.policy,
                dict(self.progress),
            ):
                self.lost = True
                logger.warning("job %s: lease lost", self.job_id)
                return


def _inputs(ctx: WorkerContext, study_uid: str) -> list[Path]:
    with ctx.factory() as session:
        digests = session.scalars(
            select(Instance.sha256).where(
                Instance.study_instance_uid == study_uid,
                Instance.origin == InstanceOrigin.RECEIVED.value,
            )
        ).all()
    return [ctx.store.path_for(d) for d in sorted(set(digests))]


def _collect(ctx: WorkerContext, job: Job, out_dir: Path) -> dict[str, Any]:
    """Record the runner's outputs: DICOM into the store (for WADO/delivery), all by kind."""
    results: dict[str, list[dict[str, str]]] = {}
    with ctx.factory() as session, session.begin():
        for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
            kind = ResultKind.of_file(path)
            if kind is None:
                logger.warning("job %s: %s is no result file; not recorded", job.id, path.name)
                continue
            entry = {"path": str(path.relative_to(ctx.results_root))}
            if path.suffix.lower() == ".dcm":
                outcome = ingest(
                    session, ctx.store, path.read_bytes(), f"job:{job.id}", InstanceOrigin.RESULT
                )
                entry |= {
                    "sop_instance_uid": outcome.sop_instance_uid,
                    "series_instance_uid": outcome.series_instance_uid,
                    "sop_class_uid": outcome.sop_class_uid,
                }
            results.setdefault(kind.value, []).append(entry)
    return results


def run_job(ctx: WorkerContext, job: Job) -> queue.JobState | None:
    """Run one claimed job to success or failure; returns its new state."""
    out_dir = ctx.results_root / job.id
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    beat = _Heartbeat(ctx, job.id)
    beat.start()
    started = time.perf_counter()
    try:
        ctx.runner(_inputs(ctx, job.study_instance_uid), out_dir, beat.report)
        timings = {"segment_s": round(time.perf_counter() - started, 3)}
        results = _collect(ctx, job, out_dir)
    except FedsegError as exc:
        # The input cannot be segmented, or the job ran out of memory: retrying will not help.
        if isinstance(exc, JobOutOfMemoryError):
            logger.error("job %s: %s", job.id, exc)
        return queue.fail(ctx.factory, job.id, ctx.worker_id, str(exc), retry=False)
    except JobProcessError as exc:
        logger.error("job %s: %s", job.id, exc)
        return queue.fail(ctx.factory, job.id, ctx.worker_id, str(exc), retry=True)
    except Exception as exc:
        # A library exception may quote a header value: keep patient values out of the job.
        error = f"{type(exc).__name__}: {library_message(exc)}"
        if is_out_of_memory(exc):  # a runner in this process (tests, embedding code)
            logger.error("job %s ran out of memory: %s", job.id, error)
            text = out_of_memory_text(0, error)
            return queue.fail(ctx.factory, job.id, ctx.worker_id, text, retry=False)
        logger.exception("job %s crashed", job.id)
        return queue.fail(ctx.factory, job.id, ctx.worker_id, error, retry=True)
    finally:
        beat.stopped.set()
    timings["total_s"] = round(time.perf_counter() - started, 3)
    if not queue.succeed(ctx.factory, job.id, ctx.worker_id, results, timings, dict(beat.progress)):
        logger.warning("job %s finished after its lease was lost; result discarded", job.id)
        return None
    if ctx.after_success is not None:
        ctx.after_success(job.id)
    return queue.JobState.SUCCEEDED


def work_once(ctx: WorkerContext) -> bool:
    """Queue quiet studies, then run one job if any; True when a job ran."""
    enqueue_quiet_studies(ctx.factory, ctx.quiet_period_s, ctx.policy)
    job = queue.claim(ctx.factory, ctx.worker_id, ctx.policy)
    if job is None:
        return False
    run_job(ctx, job)
    return True


def work_forever(
    ctx: WorkerContext,
    stop: threading.Event,
    poll_s: float = 1.0,
    idle: Callable[[], None] | None = None,
) -> None:
    """Work until ``stop`` is set; ``idle`` runs between polls (e.g. deliveries)."""
    logger.info("worker %s started", ctx.worker_id)
    while not stop.is_set():
        try:
            ran = work_once(ctx)
            if idle is not None:
                idle()
        except Exception:
            logger.exception("worker %s: poll failed", ctx.worker_id)
            ran = False
        if not ran:
            stop.wait(poll_s)
    logger.info("worker %s stopped", ctx.worker_id)
