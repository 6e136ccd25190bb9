"""Retention: purge studies finished longer ago than ``retention_days``.

A study is purged when its last instance arrived before the cutoff and every job of it finished
before the cutoff (none is queued or running). Its received and result instances, their files
(unless another instance row still names the same content), its results folders, deliveries,
jobs and study row go; the audit trail stays, with one ``retention purge`` event per study.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from service import audit
from service.db.models import Delivery, Instance, Job, JobState, Study, utcnow
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class RetentionPolicy:
    """How long finished studies are kept."""

    days: float

    def __post_init__(self) -> None:
        if self.days <= 0:
            raise ValueError(f"retention must be positive, got {self.days} days")

    def cutoff(self, now: datetime) -> datetime:
        """The oldest time still kept."""
        return now - timedelta(days=self.days)


@dataclass
class PurgeReport:
    """What one purge removed."""

    studies: int = 0
    jobs: int = 0
    instances: int = 0
    files: int = 0
    bytes: int = 0
    job_ids: tuple[str, ...] = ()


def expired_studies(session: Session, cutoff: datetime) -> list[str]:
    """Studies whose last instance and every job finished before ``cutoff``."""
    candidates = session.scalars(
        select(Study.study_instance_uid).where(Study.last_received_at < cutoff)
    ).all()
    expired = []
    for uid in candidates:
        blocking = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.study_instance_uid == uid,
                (Job.state.in_(_ACTIVE)) | (Job.finished_at >= cutoff),
            )
        )
        if not blocking:
            expired.append(uid)
    return expired


def _purge_study(
    session: Session, store: InstanceStore, results_root: Path, uid: str, report: PurgeReport
) -> list[str]:
    jobs = session.scalars(select(Job.id).where(Job.study_instance_uid == uid)).all()
    instances = session.scalars(select(Instance).where(Instance.study_instance_uid == uid)).all()
    digests = {row.sha256 for row in instances}
    report.instances += len(instances)
    for row in instances:
        session.delete(row)
    session.execute(delete(Delivery).where(Delivery.job_id.in_(jobs)))
    session.execute(delete(Job).where(Job.id.in_(jobs)))
    session.execute(delete(Study).where(Study.study_instance_uid == uid))
    session.flush()
    for digest in sorted(digests):
        still_used = session.scalar(
            select(func.count()).select_from(Instance).where(Instance.sha256 == digest)
        )
        path = store.path_for(digest)
        if not still_used and path.exists():
            report.bytes += path.stat().st_size
            store.delete(digest)
            report.files += 1
    for job_id in jobs:
        shutil.rmtree(results_root / job_id, ignore_errors=True)
    audit.record(session, "retention", "system", "retention purge", uid, f"{len(jobs)} jobs")
    return list(jobs)


def purge_expired(
    factory: sessionmaker[Session],
    store: InstanceStore,
    results_root: Path,
    policy: RetentionPolicy,
    now: datetime | None = None,
) -> PurgeReport:
    """Remove every expired study (one transaction per study); returns what went."""
    cutoff = policy.cutoff(now or utcnow())
    with factory() as session:
        expired = expired_studies(session, cutoff)
    report = PurgeReport()
    purged_jobs: list[str] = []
    for uid in expired:
        with factory() as session, session.begin():
            purged_jobs += _purge_study(session, store, results_root, uid, report)
        report.studies += 1
    report.jobs = len(purged_jobs)
    report.job_ids = tuple(purged_jobs)
    if report.studies:
        logger.info(
            "retention: purged %d studies, %d jobs, %d files (%d bytes)",
            report.studies,
            report.jobs,
            report.files,
            report.bytes,
        )
    return report
