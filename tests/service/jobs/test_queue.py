from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from service.db.engine import make_engine, session_factory
from service.db.migrate import upgrade
from service.db.models import Job, JobState, utcnow
from service.errors import DicomInputError
from service.jobs import queue
from service.jobs.worker import WorkerContext, run_job, work_once
from service.storage.store import InstanceStore
from tests.service.jobs.support import postgres_schema, sqlite_db

POLICY = queue.QueuePolicy(lease_s=30, max_attempts=3)


def _ctx(tmp_path: Path, factory, runner, worker_id: str = "w1") -> WorkerContext:  # type: ignore[no-untyped-def]
    return WorkerContext(
        factory=factory,
        store=InstanceStore(tmp_path / "store"),
        results_root=tmp_path / "results",
        runner=runner,
        policy=POLICY,
        worker_id=worker_id,
    )


def test_enqueue_is_idempotent_per_input_key(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    key = queue.input_key("1.2.3", [("1.2.3.1", "aa"), ("1.2.3.2", "bb")])
    same = queue.input_key("1.2.3", [("1.2.3.2", "bb"), ("1.2.3.1", "aa")])
    first, new1 = queue.enqueue(factory, "1.2.3", key, POLICY)
    second, new2 = queue.enqueue(factory, "1.2.3", same, POLICY)
    assert (new1, new2) == (True, False)
    assert first.id == second.id
    changed = queue.input_key("1.2.3", [("1.2.3.1", "aa"), ("1.2.3.2", "cc")])
    assert queue.enqueue(factory, "1.2.3", changed, POLICY)[1] is True


def test_claim_takes_each_job_once_and_oldest_first(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    ids = [queue.enqueue(factory, "s", f"k{n}", POLICY)[0].id for n in range(3)]
    claimed = [queue.claim(factory, f"w{n}", POLICY) for n in range(4)]
    assert [j.id for j in claimed[:3] if j] == ids
    assert claimed[3] is None
    assert all(j.state == JobState.RUNNING and j.attempts == 1 for j in claimed[:3] if j)


def test_expired_lease_is_reclaimed_then_failed_after_max_attempts(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    job, _ = queue.enqueue(factory, "s", "k", POLICY)
    for attempt in range(1, POLICY.max_attempts + 1):
        claimed = queue.claim(factory, f"dead-{attempt}", POLICY)
        assert claimed is not None and claimed.attempts == attempt
        assert queue.claim(factory, "other", POLICY) is None  # lease still held
        with factory() as session, session.begin():  # the worker dies: its lease runs out
            session.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        # The dead worker's heartbeat is refused once another claim could take over.
    assert queue.claim(factory, "late", POLICY) is None
    with factory() as session:
        final = session.get(Job, job.id)
    assert final is not None and final.state == JobState.FAILED
    assert "gave up after 3 attempts" in (final.error or "")


def test_heartbeat_extends_only_the_owners_lease(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    queue.enqueue(factory, "s", "k", POLICY)
    job = queue.claim(factory, "owner", POLICY)
    assert job is not None
    assert queue.heartbeat(factory, job.id, "owner", POLICY, {"segment": 0.5})
    assert not queue.heartbeat(factory, job.id, "intruder", POLICY)
    with factory() as session:
        row = session.get(Job, job.id)
    assert row is not None and row.progress == {"segment": 0.5}


def test_crashing_runner_is_retried_then_failed_with_its_error(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    calls: list[int] = []

    def crash(inputs, out_dir, progress) -> None:  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("GPU fell over")

    ctx = _ctx(tmp_path, factory, crash)
    job, _ = queue.enqueue(factory, "s", "k", POLICY)
    while work_once(ctx):
        pass
    with factory() as session:
        row = session.get(Job, job.id)
    assert len(calls) == 3
    assert row is not None and row.state == JobState.FAILED and row.attempts == 3
    assert row.error == "RuntimeError: GPU fell over"


def test_bad_input_fails_at_once_and_transient_errors_recover(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)

    def refuse(inputs, out_dir, progress) -> None:  # type: ignore[no-untyped-def]
        raise DicomInputError("series 1.2: no image planes")

    job, _ = queue.enqueue(factory, "s", "bad", POLICY)
    claimed = queue.claim(factory, "w1", POLICY)
    assert claimed is not None
    assert run_job(_ctx(tmp_path, factory, refuse), claimed) == JobState.FAILED
    with factory() as session:
        row = session.get(Job, job.id)
    assert row is not None and row.attempts == 1 and "no image planes" in (row.error or "")

    flaky_calls: list[int] = []

    def flaky(inputs, out_dir, progress) -> None:  # type: ignore[no-untyped-def]
        flaky_calls.append(1)
        if len(flaky_calls) < 2:
            raise OSError("disk hiccup")
        (out_dir / "measurements.json").write_text("{}")
        progress("segment", 1.0)

    job2, _ = queue.enqueue(factory, "s", "flaky", POLICY)
    ctx = _ctx(tmp_path, factory, flaky)
    while work_once(ctx):
        pass
    with factory() as session:
        row2 = session.get(Job, job2.id)
    assert row2 is not None and row2.state == JobState.SUCCEEDED and row2.attempts == 2
    assert row2.results == {"measurements": [{"path": f"{job2.id}/measurements.json"}]}
    assert set(row2.timings) == {"segment_s", "total_s"}


def _two_workers_run_each_job_once(url: str, tmp_path: Path) -> None:
    upgrade(make_engine(url))
    setup = session_factory(make_engine(url))
    n_jobs = 24
    ids = {queue.enqueue(setup, "s", f"k{n}", POLICY)[0].id for n in range(n_jobs)}
    runs: list[tuple[str, str]] = []
    lock = threading.Lock()
    both_working = threading.Event()

    def worker(name: str) -> None:
        # Each worker has its own engine: separate connections, as separate processes would.
        factory = session_factory(make_engine(url))

        def runner(inputs, out_dir, progress) -> None:  # type: ignore[no-untyped-def]
            with lock:
                runs.append((out_dir.name, name))
                if len({worker for _, worker in runs}) == 2:
                    both_working.set()
            # The first job holds its worker until the other one has claimed a job too, so
            # the jobs are truly taken concurrently.
            both_working.wait(timeout=30)

        ctx = _ctx(tmp_path / name, factory, runner, worker_id=name)
        while work_once(ctx):
            pass

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(job_id for job_id, _ in runs)
    assert set(counts) == ids
    assert max(counts.values()) == 1, "a job ran twice"
    assert len({name for _, name in runs}) == 2, "both workers should have taken jobs"
    with setup() as session:
        states = {j.state for j in session.query(Job).all()}
    assert states == {JobState.SUCCEEDED}


def test_two_workers_on_sqlite_never_run_a_job_twice(tmp_path: Path) -> None:
    _two_workers_run_each_job_once(f"sqlite:///{tmp_path / 'q.db'}", tmp_path)


def test_two_workers_on_postgresql_never_run_a_job_twice(tmp_path: Path) -> None:
    with postgres_schema() as url:
        _two_workers_run_each_job_once(url, tmp_path)


def test_skip_locked_claims_do_not_block_on_postgresql(tmp_path: Path) -> None:
    """While one transaction holds a row lock, a second claim takes the next job at once."""
    with postgres_schema() as url:
        engine = make_engine(url)
        upgrade(engine)
        factory = session_factory(engine)
        first, _ = queue.enqueue(factory, "s", "k1", POLICY)
        second, _ = queue.enqueue(factory, "s", "k2", POLICY)
        with factory() as holder, holder.begin():
            holder.query(Job).filter(Job.id == first.id).with_for_update().one()
            claimed = queue.claim(session_factory(make_engine(url)), "w2", POLICY)
        assert claimed is not None and claimed.id == second.id


@pytest.mark.parametrize("lease_s,attempts", [(0, 1), (1, 0)])
def test_policy_validates(lease_s: float, attempts: int) -> None:
    with pytest.raises(ValueError):
        queue.QueuePolicy(lease_s=lease_s, max_attempts=attempts)
