"""The Flower processes fedseg starts, run in the foreground and stopped as one tree.

``flower-superlink`` starts ``flower-superexec`` in a session of its own, which starts the
ServerApp; ``flower-supernode`` starts its ``flower-superexec`` and ClientApps in its own
process group. Stopping only the process fedseg started leaves the rest holding their ports, so
:func:`run_foreground` forwards SIGTERM, SIGINT and SIGHUP to every process group of the tree,
and kills what is still there after a grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

logger = logging.getLogger(__name__)

#: Signals that stop a foreground Flower process and everything it started.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; ppid follows it.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...), from ``/proc``.

    Empty where ``/proc`` does not exist; then only the process groups are signalled.
    """
    if not _PROC.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not count)."""
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal_groups(groups: set[int], signum: int) -> None:
    for group in groups:
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            continue


def stop_tree(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop ``process`` and every process below it: SIGTERM, then SIGKILL after ``grace_s``.

    ``process`` must lead its own process group (``start_new_session=True``): the caller's own
    group is never signalled.
    """
    tree = [process.pid, *descendants(process.pid)]
    own = os.getpgrp()
    groups = set()
    for pid in tree:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    groups.discard(own)
    logger.info("stopping %d processes in %d process groups", len(tree), len(groups))
    _signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()
        if not any(alive(pid) for pid in tree):
            return
        time.sleep(0.1)
    left = [pid for pid in tree if alive(pid)]
    logger.warning("%d Flower processes did not stop within %.0f s; killing", len(left), grace_s)
    _signal_groups(groups, signal.SIGKILL)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    process.wait()


class _StopSignal(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt, so nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopSignal(signum)


def run_foreground(command: Sequence[str], env: Mapping[str, str], grace_s: float = 10.0) -> int:
    """Run ``command`` until it exits, or until this process is told to stop.

    The command runs in a new session, so a stop signal reaches it only through this process,
    which then stops the command's whole tree (:func:`stop_tree`).

    Returns
    -------
    int
        The command's exit code, or ``128 + signal`` when stopped by a signal.
    """
    process = subprocess.Popen(list(command), env=dict(env), start_new_session=True)
    previous = {signum: signal.signal(signum, _raise_stop) for signum in STOP_SIGNALS}
    try:
        try:
            return process.wait()
        except _StopSignal as stop:
            # Further stop signals must not interrupt the clean-up.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            logger.info("%s received; stopping %s", stop, Path(command[0]).name)
            stop_tree(process, grace_s)
            return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
