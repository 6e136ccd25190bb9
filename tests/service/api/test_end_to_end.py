"""A PET study sent by STOW-RS comes back as SEG, RTSTRUCT, SR and JSON from the real pipeline."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from service.auth.tokens import Role
from service.config import Settings
from service.dicomweb.multipart import write_related
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from tests.dciodvfy import assert_valid
from tests.service.api.conftest import Api
from tests.service.inference.conftest import pointwise_model, threshold_manifest
from tests.service.web.support import run_queued_jobs

DataDir = Callable[[str], Path]


def _install_suv_threshold_model(settings: Settings, tmp_path: Path) -> None:
    manifest = threshold_manifest(
        normalisation={"kind": "suv", "low": 0.0, "high": 10.0}, spacing=(4.0, 4.0, 4.0)
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(tmp_path / "bundle", model, manifest)
    ModelStore(roots=(settings.model_store,)).install(bundle.path)


def test_stow_job_results(api: Api, settings: Settings, data_dir: DataDir, tmp_path: Path) -> None:
    _install_suv_threshold_model(settings, tmp_path)
    files = sorted(data_dir("sts-pet/ibsi_validation/dicom/STS_003/PET/image").glob("*.dcm"))
    body, content_type = write_related([f.read_bytes() for f in files], "application/dicom")
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    assert api.client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    job_id = api.client.post(
        "/v1/jobs", json={"study_instance_uid": study}, headers=api.headers(Role.SENDER)
    ).json()["id"]
    run_queued_jobs(api.state, settings)
    reader = api.headers(Role.READER)
    job = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert job["state"] == "succeeded", job
    assert {"seg", "rtstruct", "sr", "measurements"} <= set(job["results"])
    for kind in ("seg", "rtstruct", "sr"):
        response = api.client.get(f"/v1/jobs/{job_id}/results/{kind}", headers=reader)
        assert response.status_code == 200
        path = tmp_path / f"{kind}.dcm"
        path.write_bytes(response.content)
        assert_valid(path)
        assert pydicom.dcmread(io.BytesIO(response.content)).StudyInstanceUID == study
    measurements = api.client.get(f"/v1/jobs/{job_id}/results/measurements", headers=reader)
    (segment,) = measurements.json()["segments"]
    assert segment["name"] == "lesion" and segment["pet"]["suv_max"] > 4.5
    assert job["progress"], "per-stage progress was reported"
