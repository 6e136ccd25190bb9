"""STOW-RS answers damaged instances and broken multipart framing with 2xx/4xx, never 5xx.

A smoke-sized run of ``bench/fuzz_stow.py`` (the 10,000-input run is recorded in
docs/reliability.md) and the cases it found, as regressions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient

from bench.fuzz_reader import seed_series
from bench.fuzz_stow import fuzz_client
from service.auth.tokens import Role
from service.db.models import Instance
from service.dicomweb.multipart import write_related
from tests.service.api.conftest import Api

DataDir = Callable[[str], Path]
FAILED = "00081198"


def _pet(data_dir: DataDir) -> list[bytes]:
    folder = data_dir("sts-pet/ibsi_validation/dicom/STS_001/PET/image")
    return [p.read_bytes() for p in sorted(folder.glob("*.dcm"))[:4]]


def _post(api: Api, body: bytes, content_type: str) -> tuple[int, str]:
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    response = api.client.post("/dicomweb/studies", content=body, headers=headers)
    return response.status_code, response.text


def test_smoke_fuzz_has_no_server_error(api: Api, data_root: Path) -> None:
    client = TestClient(api.client.app, raise_server_exceptions=False)
    report = fuzz_client(client, api.tokens[Role.SENDER], seed_series(data_root), 150, seed=7)
    assert report.inputs == 150
    assert not report.failures, report.failures[:3]
    assert all(200 <= code < 500 for code in report.statuses), report.statuses
    assert report.statuses[400] > 0 and report.statuses[200] > 0


def test_truncated_body_is_400_and_keeps_complete_parts(api: Api, data_dir: DataDir) -> None:
    files = _pet(data_dir)
    body, content_type = write_related(files, "application/dicom")
    cut = body.rfind(b"--", 0, len(body) - 10)  # inside the last part's closing delimiter
    code, text = _post(api, body[:cut], content_type)
    assert code == 400 and "closing boundary" in text and "resend" in text
    code, _ = _post(api, body, content_type)  # the retry stores all, no duplicates
    assert code == 200
    with api.state.factory() as session:
        assert session.query(Instance).count() == len(files)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b, boundary: b.replace(boundary, boundary[::-1], 1),
        lambda b, boundary: b.replace(b"Content-Type", b"Content\x1fType", 1),
        lambda b, boundary: b"",
    ],
    ids=["wrong-boundary", "garbage-header", "empty"],
)
def test_broken_framing_is_400(
    api: Api, data_dir: DataDir, damage: Callable[[bytes, bytes], bytes]
) -> None:
    body, content_type = write_related(_pet(data_dir), "application/dicom")
    boundary = content_type.rsplit("boundary=", 1)[1].encode()
    code, text = _post(api, damage(body, boundary), content_type)
    assert code == 400, text


def test_unknown_vr_in_header_is_a_listed_failure(api: Api, data_dir: DataDir) -> None:
    good = _pet(data_dir)
    ds = pydicom.dcmread(data_dir("sts-pet/ibsi_validation/dicom/STS_001/PET/image") / "000010.dcm")
    damaged = pydicom.filebase.DicomBytesIO()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(damaged)
    data = bytearray(damaged.getvalue())
    at = data.find(b"\x08\x00\x20\x00DA")  # StudyDate, explicit VR: break the VR bytes
    assert at > 0
    data[at + 4 : at + 6] = b"\x44\x1b"
    code, text = _post(api, *write_related([*good, bytes(data)], "application/dicom"))
    assert code == 202 and FAILED in text  # the good ones stored, the damaged one listed


def test_study_mixing_patients_is_refused(api: Api, data_dir: DataDir) -> None:
    files = _pet(data_dir)
    code, _ = _post(api, *write_related(files[:2], "application/dicom"))
    assert code == 200
    other = pydicom.dcmread(pydicom.filebase.DicomBytesIO(files[2]))
    other.PatientID = "SOMEONE-ELSE"
    buffer = pydicom.filebase.DicomBytesIO()
    other.save_as(buffer)
    code, text = _post(api, *write_related([buffer.getvalue()], "application/dicom"))
    assert code == 409 and FAILED in text
    with api.state.factory() as session:
        assert session.query(Instance).count() == 2
    code, _ = _post(api, *write_related(files[2:], "application/dicom"))  # same patient: fine
    assert code == 200
