from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from service.db.models import Instance, Study, StudyState
from service.dimse.scp import ScpConfig, start_scp
from service.errors import ConfigurationError
from service.jobs.intake import enqueue_quiet_studies
from service.jobs.queue import QueuePolicy
from service.storage.store import InstanceStore
from tests.dcmtk import dcmtk
from tests.service.jobs.support import sqlite_db, write_ct_study


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 20) -> None:
    """Block until something listens on 127.0.0.1:port (fails the test after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port} after {timeout_s} s")


def test_storescu_study_is_stored_and_queued_after_the_quiet_period(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    port = free_port()
    files = write_ct_study(tmp_path / "ct")
    stop = start_scp(
        ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",)),
        factory,
        InstanceStore(tmp_path / "store"),
    )
    try:
        echo = subprocess.run(
            [dcmtk("echoscu"), "-aet", "PACS", "-aec", "FEDSEG", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert echo.returncode == 0, echo.stderr
        refused = subprocess.run(
            [
                dcmtk("storescu"),
                "-aet",
                "INTRUDER",
                "-aec",
                "FEDSEG",
                "127.0.0.1",
                str(port),
                str(files[0]),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
        sent = subprocess.run(
            [
                dcmtk("storescu"),
                "-aet",
                "PACS",
                "-aec",
                "FEDSEG",
                "127.0.0.1",
                str(port),
                *map(str, files),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
    finally:
        stop()
    with factory() as session:
        rows = session.query(Instance).all()
        study = session.query(Study).one()
    assert len(rows) == len(files) and {r.source for r in rows} == {"dimse:PACS"}
    policy = QueuePolicy()
    assert enqueue_quiet_studies(factory, 3600, policy) == []  # still inside the quiet period
    (job,) = enqueue_quiet_studies(factory, 0, policy)
    assert job.study_instance_uid == study.study_instance_uid
    with factory() as session:
        assert session.get(Study, study.study_instance_uid).state == StudyState.QUEUED  # type: ignore[union-attr]


def test_scp_refuses_to_start_without_an_allow_list() -> None:
    with pytest.raises(ConfigurationError, match="allowed calling AE"):
        ScpConfig("FEDSEG", "127.0.0.1", 11112, ())
