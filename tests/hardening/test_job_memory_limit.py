"""A real job that needs more memory than its limit fails alone: the API and SCP answer on.

The model's grid is 0.02 mm, so the 24 × 18 × 12 mm phantom CT resampled to it needs 2.4 GiB
in one array: what a decompression bomb or a huge series does to a job. The server runs its
real worker (each job in a child process) and its real C-STORE SCP, on a 1 GiB job limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from service.auth.tokens import Role
from service.config import Settings
from service.db.models import JobState
from service.server import scp_service, segment_service
from service.storage.ingest import ingest
from tests.service.api.conftest import api_settings
from tests.service.dimse.test_scp import free_port
from tests.service.jobs.support import install_ct_threshold, write_ct_study
from tests.service.live_api import LiveApi, live_api

LIMIT = 1024**3


def _install_fine_grid_model(settings: Settings, folder: Path) -> None:
    install_ct_threshold(settings, folder, "ct-fine-grid", spacing=(0.02, 0.02, 0.02))


def _echo(port: int) -> int:
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="FEDSEG")
    assert assoc.is_established, "the SCP no longer accepts associations"
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status)


@contextmanager
def health_poller(url: str) -> Iterator[list[tuple[datetime, int, float]]]:
    """Poll ``/healthz`` without pause in a thread; yields the (time, status, seconds) so far."""
    answers: list[tuple[datetime, int, float]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                status = client.get(f"{url}/healthz").status_code
                answers.append((datetime.now(UTC), status, time.perf_counter() - start))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=60)


def wait_finished(job_url: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(job_url, headers=headers, timeout=30).json()
        if job["state"] in (JobState.FAILED.value, JobState.SUCCEEDED.value):
            return job
        time.sleep(0.1)
    pytest.fail(f"the job at {job_url} did not finish within 120 s")


def _utc(stamp: str) -> datetime:
    """An API timestamp as an aware UTC datetime (SQLite hands them back without a zone)."""
    value = datetime.fromisoformat(stamp)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def over_limit_job(folder: Path) -> Iterator[tuple[LiveApi, Settings, str]]:
    """The live server (worker and SCP) with a queued job that needs more than ``LIMIT``.

    Yields the API, its settings and the job's URL; shared with ``bench/bench_job_isolation``.
    """
    settings = api_settings(
        folder,
        job_memory_limit_bytes=LIMIT,
        job_max_attempts=3,
        worker_poll_s=0.2,
        dicom_port=free_port(),
        dicom_allowed_aes=["PACS"],
    )
    _install_fine_grid_model(settings, folder)
    files = write_ct_study(folder / "ct")
    with live_api(settings, (segment_service(), scp_service)) as api:
        with api.state.factory() as session, session.begin():
            stored = [
                ingest(session, api.state.store, path.read_bytes(), "stow:live-sender")
                for path in files
            ]
        created = httpx.post(
            f"{api.url}/v1/jobs",
            json={"study_instance_uid": stored[0].study_instance_uid},
            headers=api.headers(Role.SENDER),
            timeout=30,
        )
        assert created.status_code == 202, created.text
        yield api, settings, f"{api.url}/v1/jobs/{created.json()['id']}"


def test_a_job_over_its_memory_limit_fails_once_while_the_server_answers(tmp_path: Path) -> None:
    with over_limit_job(tmp_path) as (api, settings, job_url):
        with health_poller(api.url) as answers:
            job = wait_finished(job_url, api.headers(Role.READER))
        started, finished = (_utc(job[key]) for key in ("started_at", "finished_at"))
        during = [status for at, status, _ in answers if started <= at <= finished]
        assert during, f"no /healthz poll fell inside the job's run ({started} to {finished})"
        assert set(status for _, status, _ in answers) == {200}
        assert job["state"] == JobState.FAILED.value, job
        assert job["attempts"] == 1, "an out-of-memory job must not be retried"
        assert job["error"].startswith("out of memory"), job["error"]
        assert "1.0 GiB (FEDSEG_JOB_MEMORY_LIMIT_BYTES)" in job["error"]
        assert "MemoryError" in job["error"]
        # The process that holds the API and the SCP lives on and serves.
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200
        assert _echo(settings.dicom_port) == 0x0000
