"""Who gets into the SCP: called AE title, connection and association limits, silent peers.

Loopback has a whole /8, so each "host" here is its own 127.0.0.x address: the sender under
test and the idle or greedy peer are told apart as they would be on a hospital network.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import Instance
from service.dimse.scp import ScpConfig, start_scp
from service.errors import ConfigurationError
from service.storage.store import InstanceStore
from tests.dcmtk import dcmtk
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db, write_ct_study

SENDER, GREEDY, OTHER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@contextmanager
def _scp(tmp_path: Path, **limits: float) -> Iterator[tuple[int, sessionmaker[Session]]]:
    _, factory = sqlite_db(tmp_path)
    port = free_port()
    config = ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",), **limits)  # type: ignore[arg-type]
    stop = start_scp(config, factory, InstanceStore(tmp_path / "store"))
    try:
        wait_for_port(port)
        yield port, factory
    finally:
        stop()


def _idle(port: int, source: str, count: int) -> list[socket.socket]:
    """``count`` TCP connections from ``source`` that never send a byte."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


def _associate(port: int, source: str, called: str = "FEDSEG") -> Association:
    ae = AE(ae_title="PACS")
    ae.acse_timeout = ae.network_timeout = 20
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    return ae.associate("127.0.0.1", port, ae_title=called, bind_address=(source, 0))


def _c_store(port: int, source: str, path: Path) -> int | None:
    """The C-STORE status, or None when no association was established."""
    assoc = _associate(port, source)
    if not assoc.is_established:
        return None
    status = assoc.send_c_store(pydicom.dcmread(path))
    assoc.release()
    return int(status.Status)


def _storescu(port: int, called: str, files: list[Path]) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu from 127.0.0.1, calling ``called``."""
    command = [dcmtk("storescu"), "-aet", "PACS", "-aec", called, "127.0.0.1", str(port)]
    return subprocess.run(
        [*command, *map(str, files)], capture_output=True, text=True, timeout=60, check=False
    )


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server hung up on this silent connection (waits up to 30 s)."""
    sock.settimeout(30)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def test_forty_idle_connections_do_not_block_a_real_c_store(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    with _scp(tmp_path, acse_timeout_s=2.0, max_associations_per_peer=8) as (port, factory):
        idle = _idle(port, GREEDY, 40)
        # While all forty are open: another host's sender, and dcmtk's storescu, get in.
        assert _c_store(port, SENDER, files[0]) == 0x0000
        sent = _storescu(port, "FEDSEG", files[1:])
        assert sent.returncode == 0, sent.stderr
        # The server hangs up on every silent connection (past the peer limit at once, the
        # rest after the ACSE timeout); then the same host stores again.
        closed = [_closed_by_server(sock) for sock in idle]
        assert all(closed), f"{closed.count(False)} of 40 silent connections still open"
        assert _c_store(port, GREEDY, files[0]) == 0x0000
    with factory() as session:
        assert session.query(Instance).count() == len(files)


def test_a_peer_past_its_connection_limit_is_closed_and_others_are_not(tmp_path: Path) -> None:
    with _scp(tmp_path, acse_timeout_s=30.0, max_associations_per_peer=2) as (port, _):
        held = _idle(port, GREEDY, 2)
        try:
            refused = _associate(port, GREEDY)
            assert not refused.is_established and not refused.is_rejected  # closed, no reply
            admitted = _associate(port, SENDER)
            assert admitted.is_established
            admitted.release()
        finally:
            for sock in held:
                sock.close()


def test_associations_past_the_limit_are_rejected_as_transient(tmp_path: Path) -> None:
    with _scp(tmp_path, max_associations=2) as (port, _):
        idle = _idle(port, GREEDY, 5)  # silent connections take no association slot
        held = [_associate(port, SENDER), _associate(port, OTHER)]
        try:
            assert all(a.is_established for a in held)
            third = _associate(port, SENDER)
            assert third.is_rejected
            reply = third.acceptor.primitive
            # Rejected transient, service provider (presentation), local limit exceeded.
            assert (reply.result, reply.result_source, reply.diagnostic) == (0x02, 0x03, 0x02)
        finally:
            for assoc in held:
                assoc.release()
            for sock in idle:
                sock.close()
        # A released slot is free again.
        again = _associate(port, SENDER)
        assert again.is_established
        again.release()


def test_a_wrong_called_ae_title_is_rejected_with_that_reason(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    with _scp(tmp_path) as (port, factory):
        wrong = _associate(port, SENDER, called="NOT-FEDSEG")
        assert wrong.is_rejected
        reply = wrong.acceptor.primitive
        # Rejected permanent, service user, called AE title not recognised (PS3.8 9.3.4).
        assert (reply.result, reply.result_source, reply.diagnostic) == (0x01, 0x01, 0x07)
        sent = _storescu(port, "NOT-FEDSEG", files[:1])
        assert sent.returncode != 0
        assert "Called AE Title Not Recognized" in sent.stdout + sent.stderr
        right = _associate(port, SENDER)
        assert right.is_established
        right.release()
    with factory() as session:
        assert session.query(Instance).count() == 0


@pytest.mark.parametrize(
    "limits",
    [
        {"max_associations": 0},
        {"max_associations_per_peer": 0},
        {"acse_timeout_s": 0},
        {"network_timeout_s": -1},
    ],
)
def test_limits_are_validated(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="FEDSEG_DICOM_"):
        ScpConfig("FEDSEG", "127.0.0.1", 0, ("PACS",), **limits)  # type: ignore[arg-type]
