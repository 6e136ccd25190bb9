"""The slice viewer's routes: layers of a finished job, image and label planes as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from sqlalchemy import select

from service.api.multipart import write_related
from service.api.slice_stack import encode_png, window
from service.auth.tokens import Role
from service.config import Settings
from service.db.models import AuditEvent
from service.dicom.volume import read_volume
from service.masks.seg_reader import read_seg
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


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def test_encode_png_round_trips_through_a_real_decoder() -> None:
    plane = np.arange(7 * 5, dtype=np.uint8).reshape(7, 5) * 7
    assert np.array_equal(_png(encode_png(plane)), plane)


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
    assert labels.headers["content-type"] == "image/png"
    assert np.array_equal(_png(labels.content), mask[:, :, k].T.astype(np.uint8))

    image = _png(api.client.get(f"/v1/jobs/{job_id}/viewer/0/image/{k}", headers=reader).content)
    assert image.shape == (layer["rows"], layer["columns"])
    # Windowing keeps the order of values: the lesion is brighter than the rest of the plane.
    plane = mask[:, :, k].T
    assert image[plane].mean() > image[~plane].mean() + 50

    missing = api.client.get(f"/v1/jobs/{job_id}/viewer/0/image/{layer['slices']}", headers=reader)
    assert missing.status_code == 404
    assert api.client.get(f"/v1/jobs/{job_id}/viewer/1/image/0", headers=reader).status_code == 404

    with api.state.factory() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.study_instance_uid == study)
        ).all()
    assert {"viewer open", "viewer labels", "viewer image"} <= set(actions)


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
    # Every image plane is the victim's own (windowed as the viewer does it).
    windowed = window(volume)
    for k in (0, len(files) // 2, len(files) - 1):
        plane = _png(
            api.client.get(f"/v1/jobs/{job_id}/viewer/0/image/{k}", headers=reader).content
        )
        assert np.array_equal(plane, windowed[:, :, k].T)
    # WADO-RS of the victim's study and series serves the victim's instances only.
    series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    wado = api.client.get(f"/dicomweb/studies/{study}/series/{series}", headers=reader)
    assert wado.status_code == 200 and wado.content.count(b"OTHER-PATIENT") == 0
    assert wado.content.count(b"DICM") == len(files)
