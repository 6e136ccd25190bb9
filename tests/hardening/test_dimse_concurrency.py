"""Sixteen senders may hold associations at once (pynetdicom's default of 10 refused some)."""

from __future__ import annotations

from pathlib import Path

from pynetdicom import AE

from service.dimse.scp import ScpConfig, start_scp
from service.storage.store import InstanceStore
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db


def test_sixteen_concurrent_associations_are_accepted(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    port = free_port()
    stop = start_scp(
        ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",)), factory, InstanceStore(tmp_path / "s")
    )
    held = []
    try:
        wait_for_port(port)
        for _ in range(16):
            ae = AE(ae_title="PACS")
            ae.add_requested_context("1.2.840.10008.1.1")  # Verification
            held.append(ae.associate("127.0.0.1", port, ae_title="FEDSEG"))
        established = [a.is_established for a in held]
        assert all(established), f"{established.count(False)} of 16 refused"
        assert all(a.send_c_echo().Status == 0 for a in held)
    finally:
        for assoc in held:
            if assoc.is_established:
                assoc.release()
        stop()
