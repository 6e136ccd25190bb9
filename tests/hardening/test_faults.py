"""Faults on real processes: a worker killed mid-job, the API killed mid-upload, PostgreSQL
crashed and restarted under load.

Each ends with every study stored once, one job, succeeded, and one result SEG series
(``bench/faults.py``; its figures are in docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

from bench.faults import PG_BIN, api_restart, postgres_restart, worker_kill
from tests.requirements import missing


def test_worker_killed_mid_job_completes_once(data_root: Path, tmp_path: Path) -> None:
    report = worker_kill(data_root, tmp_path, slices=30)
    assert report["note"] == "running"  # the worker died holding the job's lease
    assert report["attempts"] == 2  # claimed again after the lease expired
    assert report["problems"] == []
    audit = report["audit"]
    assert isinstance(audit, dict)
    assert audit["jobs"] == 1 and audit["jobs_by_state"] == {"succeeded": 1}
    assert list(audit["result_seg_series_per_study"].values()) == [1]


def test_api_killed_mid_upload_then_resent_is_stored_and_run_once(
    data_root: Path, tmp_path: Path
) -> None:
    report = api_restart(data_root, tmp_path, slices=20)
    assert str(report["note"]).startswith("upload cut:") and report["note"] != "upload cut: "
    assert 0 <= int(str(report["stored_before_restart"])) < 20  # the cut really was mid-upload
    assert report["retry_status"] == 200
    assert report["problems"] == []
    audit = report["audit"]
    assert isinstance(audit, dict)
    assert audit["received_instances"] == 20 and audit["jobs"] == 1
    assert list(audit["result_seg_series_per_study"].values()) == [1]


def test_postgres_crash_and_restart_under_load_recovers(data_root: Path, tmp_path: Path) -> None:
    if not (PG_BIN / "initdb").is_file():
        missing(f"PostgreSQL server binaries not found under {PG_BIN}")
    report = postgres_restart(data_root, tmp_path, studies=4)
    assert report["readyz_while_down"] == 503 and report["readyz_after"] == 200
    statuses = report["stow_statuses"]
    assert isinstance(statuses, dict) and statuses["200"] == 4  # every study acknowledged once
    assert "500" not in statuses  # an outage answers 503 + Retry-After, never a server error
    assert report["problems"] == []
    audit = report["audit"]
    assert isinstance(audit, dict)
    assert audit["received_instances"] == 24 and audit["jobs_by_state"] == {"succeeded": 4}
    assert audit["result_seg_series_per_study"] == [1]
