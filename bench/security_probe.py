"""The retrieval and admin attacks of issue 17 against a real ``fedseg serve``, with what came back.

A ``fedseg serve`` subprocess (API and in-process worker on loopback, SQLite in a temporary
folder, a 1x1x1-convolution PET model; :func:`bench.load_test.running_service`) is attacked
through its HTTP API only, so the same script measures any version of the server:

- viewer: a second patient's study reusing the victim's SeriesInstanceUID, adjacent to or on the
  victim's slice positions (STS_003 PET, 51 slices; 8 forged);
- model upload: manifest names and versions that leave the store; networks that cannot run
  (25 bytes, a custom operator, external weights, wrong output channels);
- a failed job asked for again, and retried;
- a second sender asking for a study it did not send;
- server paths in everything a reader sees; security headers; audit rows for WADO-RS misses.

Usage::

    python -m bench.security_probe [--json report.json]   # exit 1 when an attack got through
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import text

from bench.load_test import Service, running_service
from service.auth.tokens import Role, create_token
from service.config import get_settings
from service.db.engine import make_engine, session_factory
from service.dicomweb.multipart import write_related
from tests.service.inference.conftest import pointwise_model, threshold_manifest
from tests.service.jobs.support import write_ct_study

PET = "sts-pet/ibsi_validation/dicom/STS_003/PET/image"
Row = dict[str, Any]


class Probe:
    """HTTP access to the service with one token per role (and a second sender)."""

    def __init__(self, service: Service, root: Path) -> None:
        self.service, self.root = service, root
        engine = make_engine(service.database_url())
        with session_factory(engine)() as session, session.begin():
            self.admin, _ = create_token(session, "probe-admin", Role.ADMIN)
            self.stranger, _ = create_token(session, "other-pacs", Role.SENDER)
        engine.dispose()
        self.http = httpx.Client(base_url=service.url, timeout=120)
        self.seen: list[str] = []  # every body a reader or sender got back

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} | kwargs.pop("headers", {})
        response = self.http.request(method, path, headers=headers, **kwargs)
        if not response.headers.get("content-type", "").startswith(("image/", "multipart/")):
            self.seen.append(response.text)
        return response

    def stow(self, data: list[bytes], token: str) -> int:
        body, content_type = write_related(data, "application/dicom")
        headers = {"Content-Type": content_type}
        return self.call(
            "POST", "/dicomweb/studies", token, content=body, headers=headers
        ).status_code

    def queue(self, study: str, token: str) -> httpx.Response:
        return self.call("POST", "/v1/jobs", token, json={"study_instance_uid": study})

    def wait(self, job_id: str, timeout_s: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job: dict[str, Any] = self.call(
                "GET", f"/v1/jobs/{job_id}", self.service.reader_token
            ).json()
            if job["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.3)

    def leaks(self) -> int:
        """Answers so far that named a server folder (the temporary root holds them all)."""
        return sum(str(self.root) in body for body in self.seen)


def reidentified(
    files: Sequence[Path], study: str, series: str, patient: str, z: float
) -> list[bytes]:
    """The files as another study (same or new series UID), shifted by ``z`` mm."""
    out = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.PatientName = patient, f"{patient}^Probe"
        x, y, zz = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, zz + z]
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def viewer_rows(probe: Probe, files: list[Path]) -> list[Row]:
    """A forged study reusing the victim's series UID, next to or on the victim's slices."""
    spacing = abs(
        float(pydicom.dcmread(files[1]).ImagePositionPatient[2])
        - float(pydicom.dcmread(files[0]).ImagePositionPatient[2])
    )
    rows = []
    for label, z in (("adjacent", spacing * len(files)), ("overlapping", 0.0)):
        study, series = generate_uid(), generate_uid()
        probe.stow(reidentified(files, study, series, f"VICTIM-{label}", 0.0), probe.service.token)
        forged = reidentified(files[:8], generate_uid(), series, "OTHER", z)
        probe.stow(forged, probe.stranger)
        job = probe.wait(probe.queue(study, probe.admin).json()["id"])
        answer = probe.call("GET", f"/v1/jobs/{job['id']}/viewer", probe.service.reader_token)
        body = answer.json()
        slices = [layer["slices"] for layer in body.get("layers", [])] if answer.is_success else []
        rows.append(
            {
                "class": "viewer: series UID reused by another patient's study",
                "tried": f"{label}: victim {len(files)} slices, 8 forged ({job['state']} job)",
                "answer": f"{answer.status_code}, slices {slices}, {len(answer.content)} bytes",
                "wrong": slices != [len(files)],
            }
        )
    return rows


def _zip(model: bytes, **manifest: object) -> bytes:
    data = threshold_manifest().model_dump(mode="json") | manifest
    files = {"model.onnx": model, "manifest.json": json.dumps(data).encode()}
    sums = "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in files.items())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in (files | {"checksums.sha256": sums.encode()}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _external(model: bytes, location: str) -> bytes:
    proto = onnx.load_from_string(model)
    for tensor in proto.graph.initializer:
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "8")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return proto.SerializeToString()


def _custom_op(model: bytes) -> bytes:
    proto = onnx.load_from_string(model)
    proto.graph.node[0].op_type, proto.graph.node[0].domain = "Frobnicate", "org.example"
    proto.opset_import.append(onnx.helper.make_opsetid("org.example", 1))
    return proto.SerializeToString()


def model_rows(probe: Probe, files: list[Path]) -> list[Row]:
    """Uploads that leave the store or cannot run, then a job on the newest model."""
    good = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    escapes: list[tuple[str, dict[str, str]]] = [
        ("name ../escaped-name", {"name": "../escaped-name"}),
        ("version ../../escaped-version", {"version": "../../escaped-version"}),
        ("absolute name", {"name": str(probe.root / "absolute-name")}),
    ]
    # The last upload has the highest version: it would be the model the next job runs.
    broken: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("3 output channels for 1 label", lambda m: pointwise_model(np.ones((3, 1)), np.zeros(3))),
        ("custom operator", _custom_op),
        ("external weights (missing file)", lambda m: _external(m, "weights.bin")),
        ("external weights (a bundle file)", lambda m: _external(m, "checksums.sha256")),
        ("25-byte model.onnx", lambda m: b"ONNX" + b"\0" * 21),
    ]
    rows = []
    for label, fields in escapes:
        answer = probe.call("POST", "/v1/models", probe.admin, content=_zip(good, **fields))
        outside = [p for p in probe.root.glob("*escaped*")] + [
            p for p in probe.root.glob("absolute-name")
        ]
        rows.append(
            {
                "class": "model upload: path escape",
                "tried": label,
                "answer": f"{answer.status_code}; files outside the store: {len(outside)}",
                "wrong": bool(outside) or answer.status_code < 400,
            }
        )
    for number, (label, damage) in enumerate(broken, start=1):
        upload = _zip(damage(good), version=f"9.0.{number}")
        answer = probe.call("POST", "/v1/models", probe.admin, content=upload)
        rows.append(
            {
                "class": "model upload: network that cannot run",
                "tried": label,
                "answer": str(answer.status_code),
                "wrong": answer.status_code < 400,
            }
        )
    listed = [m["version"] for m in probe.call("GET", "/v1/models", probe.admin).json()]
    study = generate_uid()
    probe.stow(reidentified(files, study, generate_uid(), "MODEL-CHECK", 0.0), probe.service.token)
    job = probe.wait(probe.queue(study, probe.service.token).json()["id"])
    rows.append(
        {
            "class": "model upload: network that cannot run",
            "tried": "the next job after the uploads",
            "answer": f"installed versions {listed}; job {job['state']}",
            "wrong": job["state"] != "succeeded",
        }
    )
    return rows


def job_rows(probe: Probe) -> list[Row]:
    """A failed job asked for again and retried; another sender asking for it."""
    folder = Path(tempfile.mkdtemp(dir=probe.root))
    ct = [p.read_bytes() for p in write_ct_study(folder, seed="probe")]
    study = str(pydicom.dcmread(io.BytesIO(ct[0])).StudyInstanceUID)
    probe.stow(ct, probe.service.token)
    first = probe.wait(probe.queue(study, probe.service.token).json()["id"])
    again = probe.queue(study, probe.service.token).json()
    retry = probe.call("POST", f"/v1/jobs/{first['id']}/retry", probe.service.token)
    rerun = probe.wait(first["id"]) if retry.status_code == 202 else first
    stranger = probe.queue(study, probe.stranger)
    unknown = probe.queue(generate_uid(), probe.stranger)
    shown = sorted(stranger.json()) if stranger.is_success else []
    return [
        {
            "class": "failed job: explicit retry",
            "tried": f"CT study, no CT model: job {first['state']}; POST /v1/jobs again; retry",
            "answer": f"again: same job {again['id'] == first['id']}, {again['state']}; retry "
            f"{retry.status_code}, then {rerun['state']} (ran again: {rerun != first})",
            "wrong": retry.status_code != 202,
        },
        {
            "class": "sender: another sender's study",
            "tried": "second sender token, POST /v1/jobs for that failed study / an unknown UID",
            "answer": f"{stranger.status_code} {shown} / {unknown.status_code}",
            "wrong": stranger.status_code != unknown.status_code,
        },
    ]


def surface_rows(probe: Probe) -> list[Row]:
    """Paths in what readers saw; headers; audit rows written for WADO-RS misses."""
    reader = probe.service.reader_token
    for job in probe.call("GET", "/v1/jobs", reader).json():
        probe.call("GET", f"/v1/jobs/{job['id']}", reader)
        for index, _ in enumerate(job["results"].get("summary", [])):
            probe.call("GET", f"/v1/jobs/{job['id']}/results/summary?index={index}", reader)
    engine = make_engine(probe.service.database_url())
    count = "select count(*) from audit_events where action like 'wado-rs%'"
    with engine.connect() as connection:
        before = connection.execute(text(count)).scalar_one()
    misses = ["/dicomweb/studies/1.2.3.999", "/dicomweb/studies/1.2.3.999/series/1.2.3.998"]
    codes = [probe.call("GET", url, reader).status_code for url in misses]
    with engine.connect() as connection:
        after = connection.execute(text(count)).scalar_one()
    engine.dispose()
    headers = {}
    for path in ("/dashboard/", "/v1/jobs"):
        got = probe.http.get(path, headers={"Authorization": f"Bearer {reader}"}).headers
        wanted = ("content-security-policy", "x-frame-options", "x-content-type-options")
        headers[path] = sum(name in got for name in wanted)
    return [
        {
            "class": "server paths shown to clients",
            "tried": f"{len(probe.seen)} answers (job views and lists, summaries, viewer, errors)",
            "answer": f"{probe.leaks()} named a server folder",
            "wrong": probe.leaks() > 0,
        },
        {
            "class": "security headers",
            "tried": "GET /dashboard/, GET /v1/jobs",
            "answer": f"CSP, X-Frame-Options, nosniff present: {headers}",
            "wrong": any(n < 3 for n in headers.values()),
        },
        {
            "class": "audit of WADO-RS misses",
            "tried": f"{len(misses)} retrievals of UIDs that are not stored",
            "answer": f"{codes}; audit rows written: {after - before}",
            "wrong": after != before,
        },
    ]


def run(data: Path) -> list[Row]:
    """Every probe against one fresh server; rows in the order above."""
    files = sorted((data / PET).glob("*.dcm"))
    with tempfile.TemporaryDirectory(prefix="fedseg-probe-") as folder:
        root = Path(folder)
        with running_service(root, quiet_period_s=3600) as service:
            probe = Probe(service, root)
            rows = viewer_rows(probe, files) + model_rows(probe, files) + job_rows(probe)
            return rows + surface_rows(probe)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (and optionally write JSON); exit 1 when an attack got through."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=get_settings().data)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = run(args.data)
    print("| class | tried | answer | got through |\n|---|---|---|---|")
    for row in rows:
        through = "yes" if row["wrong"] else "no"
        print(f"| {row['class']} | {row['tried']} | {row['answer']} | {through} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(row["wrong"] for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
