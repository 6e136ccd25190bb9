"""Fault injection against real ``fedseg serve``/``fedseg worker`` processes.

* ``worker-kill``: a ``fedseg worker`` is killed with SIGKILL while it runs a job; its lease
  expires, a second worker claims the job again, and the study ends with one job, succeeded,
  and one result SEG series.
* ``postgres-restart``: a private PostgreSQL cluster is crashed (``pg_ctl -m immediate``) and
  started again while a sender streams studies and resends what was refused; every study ends
  stored once and segmented once, with no manual step.
* ``api-restart``: ``fedseg serve`` is killed with SIGKILL in the middle of a chunked STOW-RS
  upload and started again on the same state; the client resends the whole study, which is
  stored once (content-addressed, idempotent) and segmented once.

Usage::

    python -m bench.faults worker-kill api-restart postgres-restart [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.load_test import (
    SOURCE_SERIES,
    Audit,
    Service,
    audit,
    make_studies,
    running_service,
    start_serve,
    wait_for_jobs,
)
from service.config import get_settings
from service.db.engine import make_engine, session_factory
from service.db.models import Job
from service.dicomweb.multipart import write_related

LEASE_S = 3.0


def _job_rows(database_url: str) -> list[Job]:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(Job)).all())
    finally:
        engine.dispose()


def _stow(service: Service, study: list[bytes]) -> int:
    body, content_type = write_related(study, "application/dicom")
    headers = {"Authorization": f"Bearer {service.token}", "Content-Type": content_type}
    return httpx.post(
        f"{service.url}/dicomweb/studies", content=body, headers=headers, timeout=120
    ).status_code


def _start_worker(service: Service, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli.main", "worker"],
            env=service.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def worker_kill(data_root: Path, work: Path, slices: int = 40) -> dict[str, object]:
    """Kill -9 a worker mid-job; a second worker completes the job once."""
    extra = {"FEDSEG_JOB_LEASE_S": str(LEASE_S)}
    with running_service(work, quiet_period_s=0.5, extra_env=extra, worker=False) as service:
        (study,) = make_studies(data_root / SOURCE_SERIES, 1, slices, "worker-kill")
        assert _stow(service, study) == 200
        first = _start_worker(service, work / "worker1.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            jobs = _job_rows(service.database_url())
            if jobs and jobs[0].state == "running":
                break
            time.sleep(0.02)
        else:
            first.kill()
            raise RuntimeError("the job never started running")
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_while = _job_rows(service.database_url())[0].state
        second = _start_worker(service, work / "worker2.log")
        try:
            found = wait_for_jobs(service.database_url(), 1, 180)
        finally:
            second.terminate()
            second.wait(timeout=30)
        (job,) = _job_rows(service.database_url())
    return _report("worker-kill", found, len(study), killed_while, job.attempts)


def _slow_body(body: bytes, chunks: int, pause_s: float) -> Iterator[bytes]:
    step = len(body) // chunks + 1
    for offset in range(0, len(body), step):
        yield body[offset : offset + step]
        time.sleep(pause_s)


def api_restart(data_root: Path, work: Path, slices: int = 20) -> dict[str, object]:
    """Kill -9 the API mid-upload, restart it on the same state, resend: stored and run once."""
    # The quiet period outlasts the restart, so a half-received study is not segmented alone.
    with running_service(work, quiet_period_s=15.0) as service:
        (study,) = make_studies(data_root / SOURCE_SERIES, 1, slices, "api-restart")
        body, content_type = write_related(study, "application/dicom")
        headers = {"Authorization": f"Bearer {service.token}", "Content-Type": content_type}
        killer = subprocess.Popen(["sh", "-c", f"sleep 1.5; kill -9 {service.process.pid}"])
        interrupted = ""
        try:
            httpx.post(
                f"{service.url}/dicomweb/studies",
                content=_slow_body(body, 20, 0.2),
                headers=headers,
                timeout=60,
            )
        except httpx.TransportError as exc:
            interrupted = type(exc).__name__
        killer.wait()
        service.process.wait()
        partial = audit(service.database_url()).received_instances
        service.process = start_serve(
            service.env, service.api_port, service.dicom_port, service.log_path
        )
        retry = httpx.post(
            f"{service.url}/dicomweb/studies", content=body, headers=headers, timeout=120
        )
        found = wait_for_jobs(service.database_url(), 1, 180)
    report = _report("api-restart", found, len(study), f"upload cut: {interrupted}", 1)
    return report | {"stored_before_restart": partial, "retry_status": retry.status_code}


def _report(name: str, found: Audit, sent: int, note: str, attempts: int) -> dict[str, object]:
    return {
        "fault": name,
        "note": note,
        "attempts": attempts,
        "audit": found.__dict__,
        "problems": found.problems(sent, 1),
    }


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port (never the machine's server)."""

    def __init__(self, port: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fedseg-pg-"))
        self.port = port
        self.data = self.root / "data"
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", str(self.data), "-A", "trust", "-U", "fedseg")

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's default database."""
        return f"postgresql+psycopg://fedseg@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str | Path) -> None:
        # initdb and postgres refuse to run as root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *map(str, command)], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._as_postgres(PG_BIN / "pg_ctl", "-D", str(self.data), "-o", options,
                          "-l", str(self.root / "pg.log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: like a crash, no clean shutdown)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("fast")
        shutil.rmtree(self.root, ignore_errors=True)


def _send_until_stored(service: Service, study: list[bytes], statuses: list[int]) -> None:
    """What a PACS does: resend the study until the service acknowledges all of it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            code = _stow(service, study)
        except httpx.TransportError:
            code = -1
        statuses.append(code)
        if code == 200:
            return
        time.sleep(0.5)
    raise RuntimeError("the study was never stored")


def postgres_restart(data_root: Path, work: Path, studies: int = 8) -> dict[str, object]:
    """Crash and restart PostgreSQL while a sender streams studies; all end stored and run once."""
    from bench.load_test import free_port

    pg = PrivatePostgres(free_port())
    try:
        pg.start()
        extra = {"FEDSEG_DATABASE_URL": pg.url}
        # As in api_restart: the quiet period outlasts the outage, so a study cut in half by it
        # is not judged complete and segmented alone before its resend arrives.
        with running_service(work, quiet_period_s=15.0, extra_env=extra) as service:
            batch = make_studies(data_root / SOURCE_SERIES, studies, 6, "pg-restart")
            statuses: list[int] = []

            def sender() -> None:
                for study in batch:
                    _send_until_stored(service, study, statuses)
                    time.sleep(0.3)

            thread = threading.Thread(target=sender)
            thread.start()
            time.sleep(1.5)
            pg.stop("immediate")
            ready_down = httpx.get(f"{service.url}/readyz", timeout=30).status_code
            time.sleep(2.0)
            pg.start()
            thread.join(timeout=300)
            found = wait_for_jobs(service.database_url(), studies, 240)
            ready_up = httpx.get(f"{service.url}/readyz", timeout=30).status_code
    finally:
        pg.remove()
    counts = {str(code): statuses.count(code) for code in sorted(set(statuses))}
    return {
        "fault": "postgres-restart",
        "readyz_while_down": ready_down,
        "readyz_after": ready_up,
        "stow_statuses": counts,
        "audit": found.__dict__
        | {"result_seg_series_per_study": sorted(set(found.result_seg_series_per_study.values()))},
        "problems": found.problems(studies * 6, studies),
    }


FAULTS = {
    "worker-kill": worker_kill,
    "api-restart": api_restart,
    "postgres-restart": postgres_restart,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: prints one JSON report per fault; exit status 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("faults", nargs="+", choices=sorted(FAULTS))
    parser.add_argument("--data", type=Path, default=get_settings().data)
    args = parser.parse_args(argv)
    reports = []
    for name in args.faults:
        with tempfile.TemporaryDirectory(prefix=f"fedseg-{name}-") as tmp:
            reports.append(FAULTS[name](args.data, Path(tmp)))
    print(json.dumps(reports, indent=2))
    return 1 if any(r["problems"] for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
