"""A job queue in the database: enqueue, claim under a lease, heartbeat, finish.

Claims are a ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers in
several processes each take a different row without waiting on each other; SQLite serialises
writers anyway (the clause is omitted there). Either way the claim is then a conditional
``UPDATE`` that only succeeds while the row is still claimable, so a job never runs twice at
once. A running job whose lease expired (its worker died) is claimable again; each claim counts
as an attempt, and a job past its attempts is marked failed with its last error.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Job, JobState, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePolicy:
    """How long a lease lasts and how often a job is tried."""

    lease_s: float = 120.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.lease_s <= 0 or self.max_attempts < 1:
            raise ValueError("lease_s must be positive and max_attempts at least 1")


def input_key(study_uid: str, instances: Iterable[tuple[str, str]]) -> str:
    """Idempotency key of a job: the study and a digest of its (SOP UID, sha256) pairs."""
    digest = hashlib.sha256()
    for sop_uid, sha in sorted(instances):
        digest.update(f"{sop_uid}={sha};".encode())
    return f"{study_uid}:{digest.hexdigest()[:32]}"


def enqueue(
    factory: sessionmaker[Session], study_uid: str, key: str, policy: QueuePolicy
) -> tuple[Job, bool]:
    """Queue a job for this input unless one exists; returns the job and whether it is new."""
    with factory() as session:
        existing = session.scalars(select(Job).where(Job.input_key == key)).first()
        if existing is not None:
            return existing, False
        job = Job(
            id=str(uuid.uuid4()),
            input_key=key,
            study_instance_uid=study_uid,
            max_attempts=policy.max_attempts,
        )
        session.add(job)
        try:
            session.commit()
        except IntegrityError:
            # Another process queued the same input between our check and insert.
            session.rollback()
            found = session.scalars(select(Job).where(Job.input_key == key)).one()
            return found, False
        return job, True


def retry(factory: sessionmaker[Session], job_id: str, policy: QueuePolicy) -> bool:
    """Queue a failed job again with fresh attempts; False when it is not (or no longer) failed.

    The job keeps its id and input key, so its results appear where clients already look.
    """
    with factory() as session, session.begin():
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.FAILED.value)
            .values(
                state=JobState.QUEUED.value,
                attempts=0,
                max_attempts=policy.max_attempts,
                error=None,
                started_at=None,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
                progress={},
                timings={},
                results={},
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _claimable(now: Any) -> Any:
    return or_(
        Job.state == JobState.QUEUED.value,
        and_(Job.state == JobState.RUNNING.value, Job.lease_expires_at < now),
    )


def claim(factory: sessionmaker[Session], worker_id: str, policy: QueuePolicy) -> Job | None:
    """Take the oldest claimable job under a lease for ``worker_id``, or None when none is left.

    PostgreSQL skips rows other workers hold (SKIP LOCKED). SQLite has no row locks, so two
    workers can pick the same candidate; the conditional update lets exactly one win, and the
    loser tries the next candidate instead of reporting an empty queue.
    """
    for _ in range(_CLAIM_RACES):
        outcome = _try_claim(factory, worker_id, policy)
        if outcome is not _LOST_RACE:
            return outcome  # type: ignore[return-value]
    return None


_CLAIM_RACES = 16
_LOST_RACE = object()


def _try_claim(factory: sessionmaker[Session], worker_id: str, policy: QueuePolicy) -> object:
    with factory() as session, session.begin():
        now = utcnow()
        candidate = session.scalars(
            select(Job)
            .where(_claimable(now))
            .order_by(Job.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if candidate is None:
            return None
        if candidate.attempts >= candidate.max_attempts:
            # Its last worker died holding it: out of attempts, so it fails here.
            candidate.state = JobState.FAILED.value
            candidate.finished_at = now
            candidate.error = (
                f"{candidate.error or 'worker lost its lease'} "
                f"(gave up after {candidate.attempts} attempts)"
            )
            candidate.lease_owner = None
            return _LOST_RACE  # look for the next job
        claimed = session.execute(
            update(Job)
            .where(Job.id == candidate.id, _claimable(now))
            .values(
                state=JobState.RUNNING.value,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=policy.lease_s),
                attempts=Job.attempts + 1,
                started_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return _LOST_RACE
    with factory() as session:
        return session.get(Job, candidate.id)


def _owned(job_id: str, worker_id: str) -> Any:
    return and_(Job.id == job_id, Job.lease_owner == worker_id, Job.state == JobState.RUNNING.value)


def heartbeat(
    factory: sessionmaker[Session],
    job_id: str,
    worker_id: str,
    policy: QueuePolicy,
    progress: dict[str, float] | None = None,
) -> bool:
    """Extend the lease (and record progress); False when the worker no longer owns the job."""
    values: dict[str, Any] = {"lease_expires_at": utcnow() + timedelta(seconds=policy.lease_s)}
    if progress is not None:
        values["progress"] = progress
    with factory() as session, session.begin():
        result = session.execute(update(Job).where(_owned(job_id, worker_id)).values(**values))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def succeed(
    factory: sessionmaker[Session],
    job_id: str,
    worker_id: str,
    results: dict[str, Any],
    timings: dict[str, float],
    progress: dict[str, float] | None = None,
) -> bool:
    """Mark the job done with its results; False when the lease was lost meanwhile."""
    with factory() as session, session.begin():
        result = session.execute(
            update(Job)
            .where(_owned(job_id, worker_id))
            .values(
                state=JobState.SUCCEEDED.value,
                results=results,
                timings=timings,
                progress=progress or {},
                finished_at=utcnow(),
                lease_owner=None,
                error=None,
            )
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def fail(
    factory: sessionmaker[Session], job_id: str, worker_id: str, error: str, retry: bool
) -> JobState | None:
    """Record an error: requeue while attempts remain (if ``retry``), else mark failed."""
    with factory() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None or job.lease_owner != worker_id or job.state != JobState.RUNNING.value:
            return None
        job.error = error
        job.lease_owner = None
        job.lease_expires_at = None
        if retry and job.attempts < job.max_attempts:
            job.state = JobState.QUEUED.value
        else:
            job.state = JobState.FAILED.value
            job.finished_at = utcnow()
        return JobState(job.state)
