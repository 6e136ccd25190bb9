"""SIGTERM to ``fedseg federation superlink|supernode`` stops every Flower process it started.

Real processes on loopback: ``fedseg`` starts ``flower-superlink`` (which starts
``flower-superexec`` in a session of its own) or ``flower-supernode`` (which starts its
``flower-superexec``). A service manager stops ``fedseg`` with SIGTERM; nothing may be left
running or holding the ports.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.certs import create_pilot_certificates
from federation.processes import alive, descendants
from tests.federation.deployment import Process, flower_env, free_port
from tests.requirements import missing

pytestmark = pytest.mark.timeout(300)
ENTRY = "from service.cli.main import main; raise SystemExit(main())"


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _tree_with(process: Process, names: set[str], timeout: float = 90) -> list[int]:
    """The process tree below ``process`` once a process of each of ``names`` runs in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = descendants(process.popen.pid)
        running = {n for n in names for pid in tree if n in _command_line(pid)}
        if running == names:
            return tree
        assert process.popen.poll() is None, process.text
        time.sleep(0.5)
    raise AssertionError(f"{names} did not start: {process.text}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _gone(pids: list[int], timeout: float = 30) -> list[int]:
    """Those of ``pids`` still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a failed test must not leave behind (killed at teardown)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _stop_and_check(fedseg: Process, tree: list[int], ports: list[int]) -> None:
    os.kill(fedseg.popen.pid, signal.SIGTERM)  # fedseg only, as `systemctl stop` or `kill` does
    code = fedseg.popen.wait(timeout=60)
    left = _gone(tree)
    assert not left, [_command_line(p) for p in left]
    assert all(_bindable(p) for p in ports), ports
    assert code == 128 + signal.SIGTERM, fedseg.text


def test_sigterm_stops_the_superlink_and_its_superexec(
    tmp_path: Path, leftovers: list[int]
) -> None:
    if not Path("/proc").is_dir():
        missing("process trees are read from /proc (Linux)")
    certs = tmp_path / "certs"
    create_pilot_certificates(certs, sites=["a"])
    port = free_port()
    command = ["federation", "superlink", "--certs", str(certs), "--host", "127.0.0.1"]
    fedseg = Process(
        [sys.executable, "-c", ENTRY, *command, "--port", str(port)],
        flower_env(tmp_path),
        tmp_path,
    )
    try:
        assert fedseg.wait_for("Uvicorn running", 90), fedseg.text
        tree = _tree_with(fedseg, {"flower-superlink", "flower-superexec"})
        leftovers.extend(tree)
        _stop_and_check(fedseg, tree, [port])
    finally:
        fedseg.kill()


def test_sigterm_stops_the_supernode_and_its_superexec(
    tmp_path: Path, leftovers: list[int]
) -> None:
    if not Path("/proc").is_dir():
        missing("process trees are read from /proc (Linux)")
    certs = tmp_path / "certs"
    create_pilot_certificates(certs, sites=["a"])
    # No SuperLink listens there: the SuperNode keeps dialling, as at a site whose server is
    # down, while its SuperExec and ClientApp I/O port are up.
    link, port = free_port(), free_port()
    command = [
        *("federation", "supernode", "--superlink", f"127.0.0.1:{link}"),
        *("--ca", str(certs / "ca.crt"), "--key", str(certs / "a.key")),
        *("--site", "a", "--tasks", "liver", "--port", str(port)),
    ]
    fedseg = Process([sys.executable, "-c", ENTRY, *command], flower_env(tmp_path), tmp_path)
    try:
        tree = _tree_with(fedseg, {"flower-supernode", "flower-superexec"})
        leftovers.extend(tree)
        _stop_and_check(fedseg, tree, [port])
    finally:
        fedseg.kill()
