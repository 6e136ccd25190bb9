"""The slice viewer's routes: layers of a finished job, value and label planes as raw arrays."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from service.auth.tokens import Role
from service.config import Settings
from service.db.models import AuditEvent
from service.dicom.volume import read_volume
from service.dicomweb.multipart import write_related
from service.masks.seg_reader import read_seg
from service.pet.suv import to_suv
from tests.service.api.conftest import Api, api_settings
from tests.service.web.support import (
    PET_STUDY,
    DataDir,
    finish_job,
    install_suv_threshold_model,
    pet_stow_body,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path, max_upload_bytes=50_000_000)


def _plane(response: httpx.Response, dtype: str, layer: dict[str, object]) -> np.ndarray:
    """A raw plane response as (rows, columns)."""
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"] == "application/octet-stream"
    shape = (int(str(layer["rows"])), int(str(layer["columns"])))
    return np.frombuffer(response.content, np.dtype(dtype).newbyteorder("<")).reshape(shape)


def test_viewer_shows_the_delivered_seg_on_its_series(
    api: Api, settings: Settings, data_dir: DataDir, tmp_path: Path
) -> None:
    install_suv_threshold_model(settings, tmp_path)
    body, content_type, study = pet_stow_body(data_dir)
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    assert api.client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    job_id = finish_job(api.state, settings, study)
    reader = api.headers(Role.READER)

    described = api.client.get(f"/v1/jobs/{job_id}/viewer", headers=reader)
    assert described.status_code == 200, described.text
    (layer,) = described.json()["layers"]
    volume = read_volume(sorted(data_dir(PET_STUDY).glob("*.dcm")))
    assert (layer["columns"], layer["rows"], layer["slices"]) == volume.shape
    assert layer["modality"] == "PT"
    assert layer["segments"] == [{"number": 1, "name": "FDG-avid lesion"}]

    # The label plane is the SEG that was delivered, read back on the image grid.
    job = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    seg_path = api.state.results_root / job["results"]["seg"][0]["path"]
    mask = read_seg(seg_path, volume).by_number(1).mask
    k = layer["initial_slice"]
    assert k == int(np.argmax(mask.sum(axis=(0, 1))))
    labels = api.client.get(f"/v1/jobs/{job_id}/viewer/0/labels/{k}", headers=reader)
    assert labels.headers["content-encoding"] == "gzip"  # httpx asks for it and unpacks it
    assert np.array_equal(_plane(labels, "uint16", layer), mask[:, :, k].T)

    # The values are the SUVs the job measured (SUVbw), not grey levels.
    suv, _ = to_suv(volume)
    assert layer["unit"] == "SUVbw" and layer["value_type"] == "float32"
    values = api.client.get(f"/v1/jobs/{job_id}/viewer/0/values/{k}", headers=reader)
    assert np.array_equal(_plane(values, "float32", layer), suv[:, :, k].T)
    report = api.client.get(f"/v1/jobs/{job_id}/results/measurements", headers=reader).json()
    assert float(suv[mask].max()) == pytest.approx(report["segments"][0]["pet"]["suv_max"])
    assert layer["value_range"] == [float(suv.min()), float(suv.max())]
    names = [p["name"] for p in layer["presets"]]
    assert names[:2] == ["SUVbw 0-5", "SUVbw 0-10"] and names[2].startswith("SUVbw 0-max")
    assert layer["presets"][2]["high"] == pytest.approx(float(suv.max()))
    # A head-first supine axial PET: right on the left, anterior up; positions are z.
    assert layer["layout"]["markers"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert layer["layout"]["right"] == [1, 0] and layer["layout"]["down"] == [0, 1]
    z = [float(volume.affine[2, 3] + n * volume.affine[2, 2]) for n in range(volume.shape[2])]
    assert layer["layout"]["positions_mm"] == pytest.approx(z)
    assert np.allclose(layer["affine"], volume.affine)

    missing = api.client.get(f"/v1/jobs/{job_id}/viewer/0/values/{layer['slices']}", headers=reader)
    assert missing.status_code == 404
    assert api.client.get(f"/v1/jobs/{job_id}/viewer/1/values/0", headers=reader).status_code == 404

    with api.state.factory() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.study_instance_uid == study)
        ).all()
    assert {"viewer open", "viewer labels", "viewer values"} <= set(actions)


def test_viewer_of_a_job_without_results_has_no_layers(
    api: Api, settings: Settings, data_dir: DataDir
) -> None:
    body, content_type, study = pet_stow_body(data_dir)
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    api.client.post("/dicomweb/studies", content=body, headers=headers)
    job = api.client.post(
        "/v1/jobs", json={"study_instance_uid": study}, headers=api.headers(Role.SENDER)
    ).json()
    described = api.client.get(f"/v1/jobs/{job['id']}/viewer", headers=api.headers(Role.READER))
    assert described.json() == {"job_id": job["id"], "layers": []}
    unknown = api.client.get("/v1/jobs/nope/viewer", headers=api.headers(Role.READER))
    assert unknown.status_code == 404


def _reusing_series(files: list[Path], z_shift: float) -> list[bytes]:
    """Another patient's study that reuses the victim's SeriesInstanceUID (issue 17, item 2)."""
    study = generate_uid()
    out = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PatientID, ds.PatientName = "OTHER-PATIENT", "Other^Patient"
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + z_shift]
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


@pytest.mark.parametrize("overlapping", [False, True], ids=["adjacent", "overlapping"])
def test_viewer_never_shows_another_study_that_reuses_the_series_uid(
    api: Api, settings: Settings, data_dir: DataDir, tmp_path: Path, overlapping: bool
) -> None:
    install_suv_threshold_model(settings, tmp_path)
    files = sorted(data_dir(PET_STUDY).glob("*.dcm"))
    body, content_type, study = pet_stow_body(data_dir)
    sender = api.headers(Role.SENDER)
    stow = {"Content-Type": content_type} | sender
    assert api.client.post("/dicomweb/studies", content=body, headers=stow).status_code == 200
    # Eight slices of another patient under the victim's series UID: right after the victim's
    # last slice (the old viewer stacked them on: 59 slices), or at the victim's own positions
    # (the old viewer answered 422 listing the store's file paths).
    spacing = float(pydicom.dcmread(files[1]).ImagePositionPatient[2]) - float(
        pydicom.dcmread(files[0]).ImagePositionPatient[2]
    )
    z_shift = 0.0 if overlapping else spacing * len(files)
    forged, forged_type = write_related(_reusing_series(files[:8], z_shift), "application/dicom")
    forged_stow = {"Content-Type": forged_type} | sender
    assert (
        api.client.post("/dicomweb/studies", content=forged, headers=forged_stow).status_code == 200
    )
    job_id = finish_job(api.state, settings, study)
    reader = api.headers(Role.READER)

    described = api.client.get(f"/v1/jobs/{job_id}/viewer", headers=reader)
    assert described.status_code == 200, described.text[:300]
    (layer,) = described.json()["layers"]
    volume = read_volume(files)
    assert (layer["columns"], layer["rows"], layer["slices"]) == volume.shape
    assert volume.shape[2] == len(files)
    # Every value plane is the victim's own.
    suv, _ = to_suv(volume)
    for k in (0, len(files) // 2, len(files) - 1):
        plane = api.client.get(f"/v1/jobs/{job_id}/viewer/0/values/{k}", headers=reader)
        assert np.array_equal(_plane(plane, "float32", layer), suv[:, :, k].T)
    # WADO-RS of the victim's study and series serves the victim's instances only.
    series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    wado = api.client.get(f"/dicomweb/studies/{study}/series/{series}", headers=reader)
    assert wado.status_code == 200 and wado.content.count(b"OTHER-PATIENT") == 0
    assert wado.content.count(b"DICM") == len(files)
