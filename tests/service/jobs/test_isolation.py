"""Each job in a child process under a memory limit: what comes back, and what is retried."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.db.models import Job, JobState
from service.errors import FedsegError
from service.jobs.failures import JobOutOfMemoryError, JobProcessError
from service.jobs.isolation import IsolatedRunner
from service.jobs.queue import QueuePolicy
from service.jobs.worker import JobRunner, WorkerContext, work_once
from tests.service.jobs.runners import (
    allocating_runner,
    crashing_runner,
    onnxruntime_runner,
    refusing_runner,
    shared_memory_runner,
)
from tests.service.jobs.support import queued_ct_job, threshold_seg_runner, write_ct_study

#: Room for the child's interpreter, numpy and onnxruntime, far below what the runners ask.
LIMIT = 768 * 1024**2


def _isolated(runner: JobRunner, limit: int = LIMIT) -> IsolatedRunner:
    return IsolatedRunner(lambda: runner, limit)


def test_a_job_runs_in_a_child_and_its_progress_and_logs_come_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    files = write_ct_study(tmp_path / "ct")
    seen: list[tuple[str, float]] = []
    out = tmp_path / "out"
    out.mkdir()
    _isolated(threshold_seg_runner)(files, out, lambda stage, done: seen.append((stage, done)))
    assert sorted(p.name for p in out.iterdir()) == ["measurements.json", "seg.dcm"]
    assert seen == [("segment", 1.0)]

    with pytest.raises(JobOutOfMemoryError) as raised:
        _isolated(allocating_runner)(files, out, lambda stage, done: seen.append((stage, done)))
    assert ("allocate", 0.5) in seen
    assert any(r.name == "tests.jobs.child" and "allocating" in r.message for r in caplog.records)
    text = str(raised.value)
    assert text.startswith("out of memory") and "768 MiB (FEDSEG_JOB_MEMORY_LIMIT_BYTES)" in text
    assert "MemoryError" in text and "not retried" in text


def test_onnxruntime_allocation_failure_is_out_of_memory(tmp_path: Path) -> None:
    with pytest.raises(JobOutOfMemoryError, match=r"out of memory.*Fail"):
        _isolated(onnxruntime_runner)([], tmp_path, lambda *_: None)


def test_a_child_over_the_limit_in_memory_rlimit_misses_is_stopped(tmp_path: Path) -> None:
    with pytest.raises(JobOutOfMemoryError, match=r"held \d+ bytes; stopped"):
        _isolated(shared_memory_runner, 256 * 1024**2)([], tmp_path, lambda *_: None)


def test_crash_and_refusal_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(JobProcessError, match="died from SIGSEGV"):
        _isolated(crashing_runner)([], tmp_path, lambda *_: None)
    with pytest.raises(FedsegError, match="0 files hold no image series") as refused:
        _isolated(refusing_runner)([], tmp_path, lambda *_: None)
    assert not isinstance(refused.value, JobOutOfMemoryError)


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="byte count"):
        IsolatedRunner(lambda: refusing_runner, -1)


def _job_after(tmp_path: Path, runner: JobRunner) -> Job:
    policy = QueuePolicy(max_attempts=3)
    factory, store, job_id = queued_ct_job(tmp_path, policy)
    ctx = WorkerContext(factory, store, tmp_path / "results", runner, policy=policy)
    while work_once(ctx):
        pass
    with factory() as session:
        done = session.get(Job, job_id)
    assert done is not None
    return done


def test_an_out_of_memory_job_is_never_retried(tmp_path: Path) -> None:
    job = _job_after(tmp_path, _isolated(allocating_runner))
    assert job.state == JobState.FAILED.value
    assert job.attempts == 1
    assert (job.error or "").startswith("out of memory")


def test_an_in_process_memory_error_is_not_retried_either(tmp_path: Path) -> None:
    job = _job_after(tmp_path, allocating_runner_in_process)
    assert job.state == JobState.FAILED.value and job.attempts == 1
    assert "out of memory" in (job.error or "") and "MemoryError" in (job.error or "")


def allocating_runner_in_process(inputs: object, out_dir: Path, progress: object) -> None:
    raise MemoryError("Unable to allocate 4.00 GiB for an array")


def test_a_crashed_job_is_retried(tmp_path: Path) -> None:
    job = _job_after(tmp_path, _isolated(crashing_runner))
    assert job.state == JobState.FAILED.value
    assert job.attempts == 3
    assert "died from SIGSEGV" in (job.error or "")
