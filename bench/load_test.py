"""Load test of ``fedseg serve``: concurrent STOW-RS and C-STORE senders, then an audit.

A real ``fedseg serve`` subprocess (API, DIMSE SCP and its in-process worker, SQLite in a
temporary state folder, a tiny threshold PET model) receives copies of a real PET series, each
re-identified as its own study. For each concurrency level, N asyncio STOW-RS senders and then
N C-STORE senders (threads, pynetdicom) push their studies; per-request latency and throughput
are measured. Afterwards the database is audited: every instance stored once, every study one
job, every job succeeded with one result SEG series. Nothing lost, nothing duplicated.

Usage::

    python -m bench.load_test --levels 1 4 16 --studies-per-sender 2 --slices 8
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.uid import generate_uid
from pynetdicom import AE
from sqlalchemy import func, select

from service.auth.tokens import Role, create_token
from service.config import get_settings
from service.db.engine import make_engine, session_factory
from service.db.migrate import upgrade
from service.db.models import Instance, InstanceOrigin, Job
from service.dicomweb.multipart import write_related
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore

SOURCE_SERIES = "sts-pet/ibsi_validation/dicom/STS_001/PET/image"
CALLING_AE = "LOADSCU"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_threshold_model(model_store: Path, work: Path) -> None:
    """Install a 1x1x1-convolution PET lesion model (SUV > 4.5) into ``model_store``."""
    from tests.service.inference.conftest import pointwise_model, threshold_manifest

    manifest = threshold_manifest(
        normalisation={"kind": "suv", "low": 0.0, "high": 10.0}, spacing=(4.0, 4.0, 4.0)
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(work / "bundle", model, manifest)
    ModelStore(roots=(model_store,)).install(bundle.path)


def make_studies(source: Path, count: int, slices: int, tag: str) -> list[list[bytes]]:
    """``count`` copies of ``slices`` consecutive slices of a real series, each its own study."""
    files = sorted(source.glob("*.dcm"))
    start = max(0, len(files) // 2 - slices // 2)
    originals = [pydicom.dcmread(p) for p in files[start : start + slices]]
    studies = []
    for number in range(count):
        study_uid = generate_uid(entropy_srcs=[tag, str(number), "study"])
        series_uid = generate_uid(entropy_srcs=[tag, str(number), "series"])
        study = []
        for index, original in enumerate(originals):
            ds = original.copy()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, str(number), str(index)])
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PatientID = f"LOAD-{tag}-{number}"
            buffer = io.BytesIO()
            ds.save_as(buffer)
            study.append(buffer.getvalue())
        studies.append(study)
    return studies


@dataclass
class Service:
    """A running ``fedseg serve`` and how to reach it."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    api_port: int
    dicom_port: int
    token: str
    reader_token: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.api_port}"

    def database_url(self) -> str:
        """The service's database."""
        return self.env.get("FEDSEG_DATABASE_URL") or f"sqlite:///{self.state_dir / 'fedseg.db'}"


def service_env(
    root: Path, quiet_period_s: float, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Environment of a ``fedseg serve``/``fedseg worker`` under ``root``."""
    env = dict(os.environ)
    env.update(
        {
            "FEDSEG_STATE_DIR": str(root / "state"),
            "FEDSEG_MODEL_STORE": str(root / "models"),
            "FEDSEG_SHIPPED_MODELS": str(root / "shipped"),
            "FEDSEG_QUIET_PERIOD_S": str(quiet_period_s),
            "FEDSEG_WORKER_POLL_S": "0.2",
            "FEDSEG_MIN_FREE_BYTES": "0",
            "FEDSEG_DICOM_ALLOWED_AES": json.dumps([CALLING_AE]),
            "FEDSEG_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra or {})
    return env


def start_serve(
    env: dict[str, str], api_port: int, dicom_port: int, log: Path, worker: bool = True
) -> subprocess.Popen[bytes]:
    """Start ``fedseg serve`` (its output to ``log``) and wait until it answers."""
    env = env | {"FEDSEG_API_PORT": str(api_port), "FEDSEG_DICOM_PORT": str(dicom_port)}
    command = [sys.executable, "-m", "service.cli.main", "serve"] + (
        [] if worker else ["--no-worker"]
    )
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fedseg serve exited with {process.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"fedseg serve did not answer within 60 s; see {log}")


def tokens(database_url: str) -> tuple[str, str]:
    """A sender and a reader token in the service's database (migrated first)."""
    engine = make_engine(database_url)
    upgrade(engine)
    with session_factory(engine)() as session, session.begin():
        sender, _ = create_token(session, "load-sender", Role.SENDER)
        reader, _ = create_token(session, "load-reader", Role.READER)
    engine.dispose()
    return sender, reader


@contextmanager
def running_service(
    root: Path,
    quiet_period_s: float = 1.0,
    extra_env: dict[str, str] | None = None,
    worker: bool = True,
) -> Iterator[Service]:
    """A ``fedseg serve`` subprocess under ``root`` with a threshold model installed."""
    env = service_env(root, quiet_period_s, extra_env)
    install_threshold_model(root / "models", root)
    (root / "shipped").mkdir(exist_ok=True)
    database_url = env.get("FEDSEG_DATABASE_URL") or f"sqlite:///{root / 'state' / 'fedseg.db'}"
    (root / "state").mkdir(exist_ok=True)
    sender, reader = tokens(database_url)
    api_port, dicom_port = free_port(), free_port()
    log = root / "serve.log"
    process = start_serve(env, api_port, dicom_port, log, worker=worker)
    service = Service(process, root / "state", api_port, dicom_port, sender, reader, log, env)
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()


async def stow_sender(
    client: httpx.AsyncClient, token: str, studies: list[list[bytes]], latencies: list[float]
) -> int:
    """Send each study as one STOW-RS request; returns the instances acknowledged."""
    acknowledged = 0
    for study in studies:
        body, content_type = write_related(study, "application/dicom")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        start = time.perf_counter()
        response = await client.post("/dicomweb/studies", content=body, headers=headers)
        latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"STOW-RS answered {response.status_code}: {response.text[:200]}")
        acknowledged += len(response.json()["00081199"]["Value"])
    return acknowledged


def cstore_sender(port: int, studies: list[list[bytes]], latencies: list[float]) -> int:
    """Send each study over one association; returns the instances acknowledged (0x0000)."""
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.128")  # PET Image Storage
    acknowledged = 0
    for study in studies:
        start = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title="FEDSEG")
        if not assoc.is_established:
            raise RuntimeError("C-STORE association refused")  # no retry: count it as a failure
        for data in study:
            status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(data)))
            if status and status.Status == 0:
                acknowledged += 1
        assoc.release()
        latencies.append(time.perf_counter() - start)
    return acknowledged


@dataclass
class PhaseResult:
    """One protocol at one concurrency level."""

    protocol: str
    senders: int
    studies: int
    instances: int
    seconds: float
    latencies: list[float]

    def summary(self) -> dict[str, object]:
        """Throughput and latency percentiles (per study request)."""
        q = (
            statistics.quantiles(self.latencies, n=100, method="inclusive")
            if len(self.latencies) > 1
            else self.latencies * 99
        )
        return {
            "protocol": self.protocol,
            "senders": self.senders,
            "studies": self.studies,
            "instances": self.instances,
            "seconds": round(self.seconds, 2),
            "instances_per_s": round(self.instances / self.seconds, 1),
            "studies_per_s": round(self.studies / self.seconds, 2),
            "latency_p50_s": round(q[49], 3),
            "latency_p95_s": round(q[94], 3),
            "latency_p99_s": round(q[98], 3),
        }


async def stow_phase(service: Service, batches: list[list[list[bytes]]]) -> PhaseResult:
    """N concurrent STOW-RS senders, one batch of studies each."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(batches))
    async with httpx.AsyncClient(base_url=service.url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        counts = await asyncio.gather(
            *(stow_sender(client, service.token, batch, latencies) for batch in batches)
        )
        seconds = time.perf_counter() - start
    studies = sum(len(b) for b in batches)
    return PhaseResult("stow-rs", len(batches), studies, sum(counts), seconds, latencies)


def cstore_phase(service: Service, batches: list[list[list[bytes]]]) -> PhaseResult:
    """N concurrent C-STORE senders (threads), one batch of studies each."""
    latencies: list[float] = []
    counts = [0] * len(batches)

    def send(index: int) -> None:
        counts[index] = cstore_sender(service.dicom_port, batches[index], latencies)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    studies = sum(len(b) for b in batches)
    return PhaseResult("c-store", len(batches), studies, sum(counts), seconds, latencies)


@dataclass
class Audit:
    """What the database holds after a run."""

    received_instances: int
    studies_with_instances: int
    jobs: int
    jobs_by_state: dict[str, int]
    studies_with_more_than_one_job: int
    result_seg_series_per_study: dict[str, int]

    def problems(self, sent_instances: int, sent_studies: int) -> list[str]:
        """Everything lost or duplicated, in words (empty when the run is clean)."""
        out = []
        if self.received_instances != sent_instances:
            out.append(f"{sent_instances} instances sent, {self.received_instances} stored")
        if self.jobs != sent_studies or self.studies_with_more_than_one_job:
            out.append(f"{sent_studies} studies sent, {self.jobs} jobs")
        if self.jobs_by_state.get("succeeded", 0) != sent_studies:
            out.append(f"jobs by state: {self.jobs_by_state}")
        wrong = {k: v for k, v in self.result_seg_series_per_study.items() if v != 1}
        if wrong or len(self.result_seg_series_per_study) != sent_studies:
            out.append(f"result SEG series per study not all 1: {len(wrong)} studies differ")
        return out


def audit(database_url: str) -> Audit:
    """Count instances, jobs and result series in the service's database."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            received = select(Instance).where(Instance.origin == InstanceOrigin.RECEIVED.value)
            n_received = session.scalar(select(func.count()).select_from(received.subquery())) or 0
            studies = (
                session.scalar(
                    select(func.count(func.distinct(Instance.study_instance_uid))).where(
                        Instance.origin == InstanceOrigin.RECEIVED.value
                    )
                )
                or 0
            )
            by_state = dict(
                session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
            )
            per_study = session.execute(
                select(Job.study_instance_uid, func.count()).group_by(Job.study_instance_uid)
            ).all()
            seg = session.execute(
                select(
                    Instance.study_instance_uid,
                    func.count(func.distinct(Instance.series_instance_uid)),
                )
                .where(Instance.origin == InstanceOrigin.RESULT.value, Instance.modality == "SEG")
                .group_by(Instance.study_instance_uid)
            ).all()
    finally:
        engine.dispose()
    return Audit(
        received_instances=n_received,
        studies_with_instances=studies,
        jobs=sum(by_state.values()),
        jobs_by_state={str(k): int(v) for k, v in by_state.items()},
        studies_with_more_than_one_job=sum(1 for _, n in per_study if n > 1),
        result_seg_series_per_study={str(k): int(v) for k, v in seg},
    )


def wait_for_jobs(database_url: str, studies: int, timeout_s: float) -> Audit:
    """Poll until ``studies`` jobs have finished (or the timeout passes); the last audit."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = audit(database_url)
        finished = found.jobs_by_state.get("succeeded", 0) + found.jobs_by_state.get("failed", 0)
        if finished >= studies or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def split(studies: list[list[bytes]], senders: int) -> list[list[list[bytes]]]:
    """Deal studies round-robin to ``senders`` batches."""
    return [studies[i::senders] for i in range(senders)]


def run(
    data_root: Path,
    levels: Sequence[int],
    per_sender: int,
    slices: int,
    job_timeout_s: float,
    quiet_period_s: float = 10.0,
) -> dict[str, object]:
    """Run every level with both protocols against one service; the report as plain data.

    ``quiet_period_s`` must outlast the longest gap between two instances of a study under
    load, or a study still arriving is segmented early and again when complete (2 of 84
    studies with 1 s at 16 C-STORE senders on 2 cores).
    """
    phases: list[dict[str, object]] = []
    sent_instances = sent_studies = 0
    with (
        tempfile.TemporaryDirectory(prefix="fedseg-load-") as tmp,
        running_service(Path(tmp), quiet_period_s) as service,
    ):
        for level in levels:
            for protocol in ("stow-rs", "c-store"):
                studies = make_studies(
                    data_root / SOURCE_SERIES, level * per_sender, slices, f"{protocol}-{level}"
                )
                batches = split(studies, level)
                if protocol == "stow-rs":
                    result = asyncio.run(stow_phase(service, batches))
                else:
                    result = cstore_phase(service, batches)
                phases.append(result.summary())
                sent_instances += sum(len(s) for s in studies)
                sent_studies += len(studies)
        start = time.perf_counter()
        found = wait_for_jobs(service.database_url(), sent_studies, job_timeout_s)
        drain_s = time.perf_counter() - start
    return {
        "machine": f"{os.cpu_count()} cores",
        "slices_per_study": slices,
        "quiet_period_s": quiet_period_s,
        "phases": phases,
        "sent": {"instances": sent_instances, "studies": sent_studies},
        "audit": found.__dict__
        | {"result_seg_series_per_study": sorted(set(found.result_seg_series_per_study.values()))},
        "jobs_drained_after_s": round(drain_s, 1),
        "problems": found.problems(sent_instances, sent_studies),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: prints the JSON report; exit status 1 when anything was lost."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--studies-per-sender", type=int, default=2)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--job-timeout", type=float, default=900)
    parser.add_argument("--quiet-period", type=float, default=10.0)
    parser.add_argument("--data", type=Path, default=get_settings().data)
    args = parser.parse_args(argv)
    report = run(
        args.data,
        args.levels,
        args.studies_per_sender,
        args.slices,
        args.job_timeout,
        args.quiet_period,
    )
    print(json.dumps(report, indent=2))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
