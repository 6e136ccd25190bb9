"""Concurrent STOW-RS and C-STORE senders against a real ``fedseg serve``: nothing lost.

A smoke-sized run of ``bench/load_test.py`` (1/4/16 senders are recorded in
docs/reliability.md): two senders per protocol, then the database audit.
"""

from __future__ import annotations

from pathlib import Path

from bench.load_test import run


def test_two_senders_per_protocol_lose_and_duplicate_nothing(data_root: Path) -> None:
    report = run(data_root, [2], per_sender=1, slices=4, job_timeout_s=180, quiet_period_s=5)
    sent = report["sent"]
    assert sent == {"instances": 16, "studies": 4}
    audit = report["audit"]
    assert isinstance(audit, dict)
    assert audit["received_instances"] == 16
    assert audit["jobs"] == 4 and audit["jobs_by_state"] == {"succeeded": 4}
    assert audit["studies_with_more_than_one_job"] == 0
    assert audit["result_seg_series_per_study"] == [1]
    assert report["problems"] == []
    phases = report["phases"]
    assert isinstance(phases, list)
    assert [p["protocol"] for p in phases] == ["stow-rs", "c-store"]
    assert all(p["instances"] == 8 for p in phases)
