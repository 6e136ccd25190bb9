"""Each job in a child process under a memory limit, so no job can take the server down.

``fedseg serve`` holds the API, the C-STORE SCP and the worker in one process. A job that
allocates without bound (a decompression bomb, a huge series, a model grid too fine) would,
in that process, end all three by the kernel's out-of-memory killer. :class:`IsolatedRunner`
runs the job in a child process instead:

* the child's data segment is capped with ``RLIMIT_DATA`` (private writable memory: heap,
  ``mmap``'d arrays, thread stacks), so an allocation past the limit fails inside the child
  as ``MemoryError`` (numpy) or an allocation error (onnxruntime), and the child reports it;
* the parent watches the child's resident memory and kills it past the limit (memory that
  ``RLIMIT_DATA`` does not count, such as shared mappings);
* the child's log records and progress come back over a pipe, and its failure is classified
  (:mod:`service.jobs.failures`): refused input and out-of-memory are never retried, a crash is.

Children are forked from multiprocessing's fork server, a single-threaded process that has
imported the pipeline once (:mod:`service.jobs.preload`), so a job starts in a fraction of a
second rather than re-importing numpy, onnxruntime and highdicom, and never inherits the
API's threads.

``limit_bytes = 0`` keeps the child process but sets no limit.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import multiprocessing.forkserver
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from pathlib import Path

from service.errors import FedsegError
from service.jobs.failures import (
    JobOutOfMemoryError,
    JobProcessError,
    is_out_of_memory,
    out_of_memory_text,
)
from service.jobs.worker import JobRunner, Progress
from service.library_logging import library_message, redact_traceback, route_library_warnings

logger = logging.getLogger(__name__)

#: How often the parent checks the child's resident memory (seconds).
WATCH_INTERVAL_S = 0.2
#: How long a child that has reported may take to exit before it is killed (seconds).
EXIT_WAIT_S = 30.0
#: What the fork server imports before it forks any job: the pipeline, warmed.
PRELOAD = ("service.jobs.preload",)


class Outcome(StrEnum):
    """How the child ended, as it reports it."""

    DONE = "done"
    REFUSED = "refused"  # a FedsegError: the input cannot be segmented
    OUT_OF_MEMORY = "out-of-memory"
    CRASHED = "crashed"


@dataclass(frozen=True)
class IsolatedRunner:
    """A :class:`JobRunner` that runs each job in a child process.

    ``prepare`` runs in the parent at each job and returns the picklable runner the child
    calls (so settings read from the database, such as routing rules, are current).
    """

    prepare: Callable[[], JobRunner]
    limit_bytes: int = 0

    def __post_init__(self) -> None:
        if self.limit_bytes < 0:
            raise ValueError("the job memory limit is a byte count, or 0 for none")

    def start_fork_server(self) -> None:
        """Start the fork server now, so the first job does not wait for its imports."""
        _context()
        multiprocessing.forkserver.ensure_running()

    def __call__(self, inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        """Run the job in a child; raise what it raised, classified."""
        context = _context()
        reader, writer = context.Pipe(duplex=False)
        child = context.Process(
            target=_child_main,
            args=(
                self.prepare(),
                list(inputs),
                out_dir,
                self.limit_bytes,
                logging.getLogger().getEffectiveLevel(),
                writer,
            ),
            name="fedseg-job",
            daemon=True,
        )
        child.start()
        writer.close()  # the child holds the only write end: its exit ends the pipe
        try:
            report, killed_rss = _follow(child, reader, progress, self.limit_bytes)
            child.join(EXIT_WAIT_S)  # its pipe is closed; let it finish exiting
        finally:
            reader.close()
            if child.is_alive():
                child.kill()
            child.join()
        _raise_for(report, killed_rss, child.exitcode, self.limit_bytes)


def _context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the pipeline once; each job forks from it, ready to run.
    context.set_forkserver_preload(list(PRELOAD))
    return context


def _follow(
    child: multiprocessing.process.BaseProcess,
    reader: Connection,
    progress: Progress,
    limit_bytes: int,
) -> tuple[tuple[str, str] | None, int]:
    """Relay the child's messages until its pipe closes; kill it past the memory limit.

    Returns its final report (outcome, text), or None, and the resident size it was killed at
    (0 when it was not).
    """
    report: tuple[str, str] | None = None
    while True:
        try:
            if reader.poll(WATCH_INTERVAL_S):
                message = reader.recv()
                kind = message[0]
                if kind == "log":
                    record: logging.LogRecord = message[1]
                    logging.getLogger(record.name).handle(record)
                elif kind == "progress":
                    progress(message[1], message[2])
                else:
                    report = (message[0], message[1])
                continue
        except (EOFError, OSError):
            break  # the child ended (or died mid-message)
        if limit_bytes and child.pid is not None:
            rss = _resident_bytes(child.pid)
            if rss > limit_bytes:
                child.kill()
                return report, rss
        if not child.is_alive() and not reader.poll(0):
            break
    return report, 0


def _raise_for(
    report: tuple[str, str] | None, killed_rss: int, exitcode: int | None, limit_bytes: int
) -> None:
    if killed_rss:
        raise JobOutOfMemoryError(
            out_of_memory_text(limit_bytes, f"the job process held {killed_rss} bytes; stopped")
        )
    if report is not None:
        outcome, text = Outcome(report[0]), report[1]
        if outcome is Outcome.DONE:
            if exitcode != 0:  # the results are written; only its exit went wrong
                logger.warning("the job process finished, then exited with %s", exitcode)
            return
        if outcome is Outcome.REFUSED:
            raise FedsegError(text)
        if outcome is Outcome.OUT_OF_MEMORY:
            raise JobOutOfMemoryError(out_of_memory_text(limit_bytes, text))
        if outcome is Outcome.CRASHED:
            raise JobProcessError(f"the job process failed: {text}")
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            # Nothing here killed it: the kernel's (or a cgroup's) out-of-memory killer did.
            raise JobOutOfMemoryError(
                out_of_memory_text(limit_bytes, f"the job process was killed by {name}")
            )
        raise JobProcessError(f"the job process died from {name}")
    raise JobProcessError(f"the job process exited with status {exitcode} and no result")


def _resident_bytes(pid: int) -> int:
    """The resident memory of ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class _PipeHandler(logging.Handler):
    """Sends each record to the parent, formatted (no arguments or tracebacks to pickle)."""

    def __init__(self, send: Callable[[tuple[object, ...]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            sent = copy.copy(record)
            sent.msg, sent.args, sent.exc_info, sent.exc_text = message, None, None, None
            self.send(("log", sent))
        except Exception:
            self.handleError(record)


def _child_main(
    runner: JobRunner,
    inputs: list[Path],
    out_dir: Path,
    limit_bytes: int,
    log_level: int,
    conn: Connection,
) -> None:
    """The child: limit memory, forward logs and progress, run, report how it ended."""
    lock = threading.Lock()

    def send(message: tuple[object, ...]) -> None:
        with lock:
            conn.send(message)

    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(log_level)
    route_library_warnings()
    try:
        runner(inputs, out_dir, lambda stage, fraction: send(("progress", stage, fraction)))
    except FedsegError as exc:
        send((Outcome.REFUSED.value, str(exc)))
    except BaseException as exc:
        text = f"{type(exc).__name__}: {library_message(exc)}"
        if is_out_of_memory(exc):
            send((Outcome.OUT_OF_MEMORY.value, text))
        else:
            logger.error("job crashed:\n%s", redact_traceback(exc))
            send((Outcome.CRASHED.value, text))
    else:
        send((Outcome.DONE.value, ""))
    finally:
        conn.close()
