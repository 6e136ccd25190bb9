"""Probe the C-STORE SCP as a misconfigured or hostile host would (issue 17, items 10 and 14).

Usage: ``python -m bench.probe_dimse_admission [--idle 40]``

Starts the SCP with its default settings on loopback, then: associates with a wrong called AE
title; opens ``--idle`` TCP connections from 127.0.0.3 that never send a byte, and, while they
are open, associates from 127.0.0.2; closes them and measures how long until an association
from 127.0.0.2 is accepted. Prints JSON. Runs against any checkout (``PYTHONPATH=<tree>``).
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from service.dimse.scp import ScpConfig, start_scp
from service.storage.store import InstanceStore
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db


def _associate(port: int, source: str, called: str = "FEDSEG") -> Association:
    ae = AE(ae_title="PACS")
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(source, 0))


def _outcome(assoc: Association) -> str:
    if assoc.is_established:
        assoc.release()
        return "established"
    if assoc.is_rejected:
        reply = assoc.acceptor.primitive
        return f"rejected {reply.result:#x}/{reply.result_source:#x}/{reply.diagnostic:#x}"
    return "closed without an answer"


def probe(idle_count: int) -> dict[str, object]:
    """Run the three probes against a fresh SCP."""
    folder = Path(tempfile.mkdtemp())
    _, factory = sqlite_db(folder)
    port = free_port()
    stop = start_scp(
        ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",)), factory, InstanceStore(folder / "s")
    )
    try:
        wait_for_port(port)
        wrong_called = _outcome(_associate(port, "127.0.0.2", called="NOT-FEDSEG"))
        idle = []
        for _ in range(idle_count):
            sock = socket.socket()
            sock.bind(("127.0.0.3", 0))
            sock.connect(("127.0.0.1", port))
            idle.append(sock)
        time.sleep(0.5)  # let the server accept them all
        while_idle = _outcome(_associate(port, "127.0.0.2"))
        for sock in idle:
            sock.close()
        closed_at = time.monotonic()
        while _outcome(_associate(port, "127.0.0.2")) != "established":
            time.sleep(0.5)
        blocked_s = time.monotonic() - closed_at
    finally:
        stop()
    return {
        "wrong_called_ae": wrong_called,
        f"other_host_while_{idle_count}_idle": while_idle,
        "seconds_until_accepted_after_idle_closed": round(blocked_s, 1),
    }


def main() -> None:
    """Parse arguments, probe, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=40, help="silent connections to open")
    print(json.dumps(probe(parser.parse_args().idle), indent=2))


if __name__ == "__main__":
    main()
