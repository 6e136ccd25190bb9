"""Retention purges studies finished before the cutoff: rows, files, results; audit stays."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import AuditEvent, Instance, InstanceOrigin, Job, Study, utcnow
from service.jobs.intake import enqueue_study
from service.jobs.queue import QueuePolicy, claim
from service.jobs.worker import WorkerContext, run_job
from service.storage.ingest import ingest
from service.storage.retention import RetentionPolicy, expired_studies, purge_expired
from service.storage.store import InstanceStore
from tests.service.jobs.support import sqlite_db, threshold_seg_runner, write_ct_study

OLD = timedelta(days=40)


def _receive(factory: sessionmaker[Session], store: InstanceStore, folder: Path, seed: str) -> str:
    with factory() as session, session.begin():
        outcomes = [
            ingest(session, store, p.read_bytes(), "test")
            for p in write_ct_study(folder / seed, seed=seed)
        ]
    return outcomes[0].study_instance_uid


def _age(factory: sessionmaker[Session], study: str) -> None:
    then = utcnow() - OLD
    with factory() as session, session.begin():
        session.execute(
            update(Study).where(Study.study_instance_uid == study).values(last_received_at=then)
        )
        session.execute(update(Job).where(Job.study_instance_uid == study).values(finished_at=then))


def test_purge_removes_only_expired_finished_studies(tmp_path: Path) -> None:
    engine, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "instances")
    results = tmp_path / "results"
    old, recent, waiting = (_receive(factory, store, tmp_path, s) for s in ("a", "b", "c"))
    ctx = WorkerContext(factory, store, results, threshold_seg_runner)
    policy = QueuePolicy()
    enqueue_study(factory, old, policy)
    job = claim(factory, "w", policy)
    assert job is not None
    ctx.worker_id = "w"
    run_job(ctx, job)
    enqueue_study(factory, waiting, policy)  # queued, never run
    _age(factory, old)
    _age(factory, waiting)
    with factory() as session:
        old_files = [
            store.path_for(d)
            for d in session.scalars(
                select(Instance.sha256).where(Instance.study_instance_uid == old)
            )
        ]
        origins = set(
            session.scalars(select(Instance.origin).where(Instance.study_instance_uid == old))
        )
    assert origins == {InstanceOrigin.RECEIVED.value, InstanceOrigin.RESULT.value}
    assert all(p.exists() for p in old_files) and (results / job.id).is_dir()

    with factory() as session:
        assert expired_studies(session, utcnow() - timedelta(days=30)) == [old]
    report = purge_expired(factory, store, results, RetentionPolicy(days=30))

    assert (report.studies, report.jobs, report.job_ids) == (1, 1, (job.id,))
    assert report.instances == len(old_files) == report.files
    assert report.bytes > 0
    assert not any(p.exists() for p in old_files)
    assert not (results / job.id).exists()
    with factory() as session:
        left = set(session.scalars(select(Instance.study_instance_uid)))
        assert left == {recent, waiting}
        assert session.get(Study, old) is None and session.get(Job, job.id) is None
        assert session.scalars(select(Job.study_instance_uid)).all() == [waiting]
        (event,) = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "retention purge")
        ).all()
        assert event.study_instance_uid == old
    again = purge_expired(factory, store, results, RetentionPolicy(days=30))
    assert again.studies == 0
    engine.dispose()


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetentionPolicy(days=0)


def test_worker_idle_step_purges_at_most_once_per_interval(tmp_path: Path) -> None:
    from service.config import Settings
    from service.db.migrate import upgrade
    from service.server import Server, retention_step

    state = Server.from_settings(Settings(state_dir=tmp_path / "state", retention_days=30))
    upgrade(state.engine)
    first = _receive(state.factory, state.store, tmp_path, "first")
    _age(state.factory, first)
    step = retention_step(state, interval_s=3600)
    step()
    second = _receive(state.factory, state.store, tmp_path, "second")
    _age(state.factory, second)
    step()  # within the interval: nothing happens
    with state.factory() as session:
        assert set(session.scalars(select(Study.study_instance_uid))) == {second}
    retention_step(state, interval_s=3600)()
    with state.factory() as session:
        assert session.scalars(select(Study.study_instance_uid)).all() == []
    state.engine.dispose()
