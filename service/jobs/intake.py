"""Turning received studies into jobs once their quiet period has passed."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Instance, InstanceOrigin, Job, Study, StudyState, utcnow
from service.jobs.queue import QueuePolicy, enqueue, input_key

logger = logging.getLogger(__name__)


def study_input_key(session: Session, study_uid: str) -> str | None:
    """The job key of a study's received instances, or None when it has none."""
    pairs = session.execute(
        select(Instance.sop_instance_uid, Instance.sha256).where(
            Instance.study_instance_uid == study_uid,
            Instance.origin == InstanceOrigin.RECEIVED.value,
        )
    ).all()
    return input_key(study_uid, [(p[0], p[1]) for p in pairs]) if pairs else None


def enqueue_study(factory: sessionmaker[Session], study_uid: str, policy: QueuePolicy) -> Job:
    """Queue a job for a study's current instances (the existing one if identical).

    Raises
    ------
    LookupError
        If no instance of that study has been received.
    """
    with factory() as session:
        key = study_input_key(session, study_uid)
    if key is None:
        raise LookupError(f"no instances of study {study_uid} have been received")
    job, new = enqueue(factory, study_uid, key, policy)
    with factory() as session, session.begin():
        study = session.get(Study, study_uid)
        if study is not None:
            study.state = StudyState.QUEUED.value
    if new:
        logger.info("queued job %s", job.id)
    return job


def enqueue_quiet_studies(
    factory: sessionmaker[Session], quiet_period_s: float, policy: QueuePolicy
) -> list[Job]:
    """Queue every receiving study that has had no instance for ``quiet_period_s``."""
    cutoff = utcnow() - timedelta(seconds=quiet_period_s)
    with factory() as session:
        ready = session.scalars(
            select(Study.study_instance_uid).where(
                Study.state == StudyState.RECEIVING.value, Study.last_received_at <= cutoff
            )
        ).all()
    return [enqueue_study(factory, uid, policy) for uid in ready]
