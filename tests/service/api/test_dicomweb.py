from __future__ import annotations

import email
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from service.auth.tokens import Role
from service.db.models import AuditEvent, Instance, Job
from service.dicomweb.multipart import write_related
from service.jobs.worker import WorkerContext, work_once
from tests.service.api.conftest import Api
from tests.service.jobs.support import threshold_seg_runner, write_ct_study

REFERENCED, FAILED, REASON = "00081199", "00081198", "00081197"


def _parts(body: bytes, content_type: str) -> list[bytes]:
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [part.get_payload(decode=True) for part in message.get_payload()]  # type: ignore[union-attr,misc]


def _stow(api: Api, files: list[bytes], chunked: bool = False) -> tuple[int, dict]:  # type: ignore[type-arg]
    body, content_type = write_related(files, "application/dicom")
    content: bytes | Iterator[bytes] = body
    if chunked:  # a generator body goes out with Transfer-Encoding: chunked, no length
        content = (body[i : i + 7000] for i in range(0, len(body), 7000))
    response = api.client.post(
        "/dicomweb/studies",
        content=content,
        headers={"Content-Type": content_type} | api.headers(Role.SENDER),
    )
    return response.status_code, response.json()


@pytest.fixture
def ct(tmp_path: Path) -> list[Path]:
    return write_ct_study(tmp_path / "ct")


def test_stow_acknowledges_every_instance_chunked_or_not(api: Api, ct: list[Path]) -> None:
    data = [p.read_bytes() for p in ct]
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in ct}
    code, body = _stow(api, data, chunked=True)
    assert code == 200
    listed = {item["00081155"]["Value"][0] for item in body[REFERENCED]["Value"]}
    assert listed == uids and FAILED not in body
    code_again, body_again = _stow(api, data)  # re-sent: idempotent, still acknowledged
    assert code_again == 200 and len(body_again[REFERENCED]["Value"]) == len(ct)
    with api.state.factory() as session:
        assert session.query(Instance).count() == len(ct)
        audit = session.query(AuditEvent).filter_by(action="stow-rs store").all()
    assert [a.actor for a in audit] == ["test-sender", "test-sender"]
    assert audit[0].study_instance_uid == pydicom.dcmread(ct[0]).StudyInstanceUID


def test_stow_lists_failures_with_a_reason(api: Api, ct: list[Path]) -> None:
    code, body = _stow(api, [ct[0].read_bytes(), b"not dicom at all"])
    assert code == 202
    assert len(body[REFERENCED]["Value"]) == 1
    (failure,) = body[FAILED]["Value"]
    assert failure[REASON]["Value"] == [0xC000]
    code_all_bad, body_all_bad = _stow(api, [b"junk"])
    assert code_all_bad == 409 and len(body_all_bad[FAILED]["Value"]) == 1


def test_upload_limit_applies_with_and_without_content_length(api: Api, ct: list[Path]) -> None:
    big = [b"\0" * 3_000_000, b"\0" * 3_000_000]  # 6 MB > the 5 MB limit of the fixture
    body, content_type = write_related(big, "application/dicom")
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    sized = api.client.post("/dicomweb/studies", content=body, headers=headers)
    chunked = api.client.post(
        "/dicomweb/studies",
        content=(body[i : i + 65536] for i in range(0, len(body), 65536)),
        headers=headers,
    )
    assert sized.status_code == 413 and chunked.status_code == 413
    wrong_type = api.client.post(
        "/dicomweb/studies",
        content=b"x",
        headers={"Content-Type": "application/dicom"} | api.headers(Role.SENDER),
    )
    assert wrong_type.status_code == 415


def _run_worker(api: Api) -> None:
    state = api.state
    ctx = WorkerContext(
        factory=state.factory,
        store=state.store,
        results_root=state.results_root,
        runner=threshold_seg_runner,
        policy=state.policy,
        quiet_period_s=3600,
    )
    while work_once(ctx):
        pass


def test_job_results_qido_and_wado(api: Api, ct: list[Path]) -> None:
    _stow(api, [p.read_bytes() for p in ct])
    study = str(pydicom.dcmread(ct[0]).StudyInstanceUID)
    sender = api.headers(Role.SENDER)
    created = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender)
    again = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender)
    assert created.status_code == 202 and created.json()["id"] == again.json()["id"]
    _run_worker(api)
    reader = api.headers(Role.READER)
    job = api.client.get(f"/v1/jobs/{created.json()['id']}", headers=reader).json()
    assert job["state"] == "succeeded" and job["progress"] == {"segment": 1.0}
    assert set(job["results"]) == {"seg", "measurements"}
    seg_bytes = api.client.get(f"/v1/jobs/{job['id']}/results/seg", headers=reader).content
    seg = pydicom.dcmread(io.BytesIO(seg_bytes))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == study
    measurements = api.client.get(f"/v1/jobs/{job['id']}/results/measurements", headers=reader)
    assert measurements.json() == {"voxels": 6 * 5 * 2}
    assert api.client.get(f"/v1/jobs/{job['id']}/results/sr", headers=reader).status_code == 404

    studies = api.client.get(
        "/dicomweb/studies", params={"ModalitiesInStudy": "SEG"}, headers=reader
    )
    (found,) = studies.json()
    assert found["0020000D"]["Value"] == [study]
    assert found["00080061"]["Value"] == ["CT", "SEG"]
    series = api.client.get(f"/dicomweb/studies/{study}/series", headers=reader).json()
    by_modality = {s["00080060"]["Value"][0]: s for s in series}
    assert set(by_modality) == {"CT", "SEG"}
    seg_series = by_modality["SEG"]["0020000E"]["Value"][0]
    assert seg_series == seg.SeriesInstanceUID

    wado = api.client.get(f"/dicomweb/studies/{study}/series/{seg_series}", headers=reader)
    assert wado.headers["content-type"].startswith("multipart/related")
    (part,) = _parts(wado.content, wado.headers["content-type"])
    assert part == seg_bytes
    metadata = api.client.get(
        f"/dicomweb/studies/{study}/series/{seg_series}/metadata", headers=reader
    ).json()
    assert metadata[0]["00080016"]["Value"] == [seg.SOPClassUID]

    # The same study re-sent makes no new job and no new result series.
    _stow(api, [p.read_bytes() for p in ct])
    api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender)
    _run_worker(api)
    with api.state.factory() as session:
        assert session.query(Job).count() == 1
        assert session.query(Instance).filter_by(modality="SEG").count() == 1
        actions = {a.action for a in session.query(AuditEvent).all()}
    assert {"job create", "job view", "result seg", "qido-rs studies", "wado-rs series"} <= actions


def test_job_from_an_upload_and_unknown_study(api: Api, ct: list[Path]) -> None:
    body, content_type = write_related([p.read_bytes() for p in ct], "application/dicom")
    headers = api.headers(Role.SENDER)
    job = api.client.post(
        "/v1/jobs", content=body, headers={"Content-Type": content_type} | headers
    )
    assert job.status_code == 202 and job.json()["state"] == "queued"
    missing = api.client.post("/v1/jobs", json={"study_instance_uid": "9.9.9"}, headers=headers)
    assert missing.status_code == 404 and "no instances" in missing.json()["detail"]
    listed = api.client.get("/v1/jobs", headers=api.headers(Role.READER)).json()
    assert [j["id"] for j in listed] == [job.json()["id"]]
    assert (
        json.loads(json.dumps(listed))[0]["study_instance_uid"]
        == pydicom.dcmread(ct[0]).StudyInstanceUID
    )


def test_wado_rs_audits_what_it_served_and_nothing_it_did_not(api: Api, ct: list[Path]) -> None:
    _stow(api, [p.read_bytes() for p in ct])
    header = pydicom.dcmread(ct[0])
    study, series = str(header.StudyInstanceUID), str(header.SeriesInstanceUID)
    reader = api.headers(Role.READER)
    misses = [
        "/dicomweb/studies/1.2.3.999",
        f"/dicomweb/studies/{study}/series/1.2.3.999",
        f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3.999",
        f"/dicomweb/studies/{study}/series/1.2.3.999/metadata",
        # The right series under another study UID is not this study's series.
        f"/dicomweb/studies/1.2.3.999/series/{series}",
    ]
    for url in misses:
        assert api.client.get(url, headers=reader).status_code == 404, url
    with api.state.factory() as session:
        assert session.query(AuditEvent).filter(AuditEvent.action.like("wado-rs%")).count() == 0
    assert api.client.get(f"/dicomweb/studies/{study}", headers=reader).status_code == 200
    with api.state.factory() as session:
        (event,) = session.query(AuditEvent).filter(AuditEvent.action.like("wado-rs%")).all()
    assert (event.action, event.study_instance_uid) == ("wado-rs study", study)
