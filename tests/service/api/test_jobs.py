"""Jobs through the API: explicit retry of a failed job, what a sender may learn, and no server
paths in what readers see (issue 17, items 6, 12 and 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from sqlalchemy import select

from service.auth.tokens import Role, create_token
from service.config import Settings
from service.db.models import AuditEvent
from service.dicomweb.multipart import write_related
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from service.jobs.routing import rule_source
from service.jobs.runner import segment_runner
from service.jobs.worker import WorkerContext, work_once
from tests.service.api.conftest import Api, api_settings
from tests.service.inference.conftest import pointwise_model, threshold_manifest
from tests.service.jobs.support import postgres_schema, write_ct_study
from tests.service.web.support import run_queued_jobs


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    if request.param == "sqlite":
        yield api_settings(tmp_path)
        return
    with postgres_schema() as url:
        yield api_settings(tmp_path, database_url=url)


def _install_ct_model(settings: Settings, folder: Path) -> None:
    """A model labelling CT voxels above 100 HU (normalised 0.45 of -200..400 HU)."""
    manifest = threshold_manifest(
        modality="CT", normalisation={"kind": "ct-window", "low": -200.0, "high": 400.0}
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(folder / "ct-bundle", model, manifest)
    ModelStore(roots=(settings.model_store,)).install(bundle.path)


def _stow(api: Api, files: list[Path], token: str) -> str:
    body, content_type = write_related([f.read_bytes() for f in files], "application/dicom")
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    assert api.client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    return str(pydicom.dcmread(files[0]).StudyInstanceUID)


def _no_server_paths(text: str, settings: Settings) -> None:
    for root in (settings.state_dir, settings.model_store, settings.shipped_models):
        assert str(root) not in text, f"{root} shown to a client: {text[:300]}"
    assert str(settings.state_dir.parent) not in text


def test_a_failed_job_is_retried_explicitly_on_the_same_input(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    study = _stow(api, write_ct_study(tmp_path / "ct"), api.tokens[Role.SENDER])
    sender, reader = api.headers(Role.SENDER), api.headers(Role.READER)
    created = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender)
    assert created.status_code == 202
    job_id = created.json()["id"]
    run_queued_jobs(api.state, settings)  # no model installed: the job fails

    failed = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert failed["state"] == "failed" and "no model bundles installed" in failed["error"]
    _no_server_paths(failed["error"], settings)
    # Asking again for the same input answers the same failed job: no silent re-run.
    again = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender)
    assert again.json() == {"id": job_id, "study_instance_uid": study, "state": "failed"}

    _install_ct_model(settings, tmp_path)
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=reader).status_code == 403
    retried = api.client.post(f"/v1/jobs/{job_id}/retry", headers=sender)
    assert retried.status_code == 202, retried.text
    assert retried.json() == {"id": job_id, "study_instance_uid": study, "state": "queued"}
    queued = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert queued["error"] is None and queued["attempts"] == 0
    twice = api.client.post(f"/v1/jobs/{job_id}/retry", headers=sender)
    assert twice.status_code == 409 and "only a failed job" in twice.json()["detail"]
    run_queued_jobs(api.state, settings)

    done = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert done["state"] == "succeeded", done
    assert {"seg", "summary"} <= set(done["results"])
    # The job status carries each series' intended use and each structure's QC verdict.
    (series,) = done["qc"]["series"]
    assert series["intended_use"].startswith("RESEARCH USE ONLY; CT")
    assert [s["name"] for s in series["structures"]] == ["lesion"]
    assert series["structures"][0]["status"] in {"pass", "warn", "fail"}
    summary = api.client.get(f"/v1/jobs/{job_id}/results/summary", headers=reader)
    assert summary.status_code == 200
    _no_server_paths(summary.text, settings)
    assert summary.json()["series"][0]["outputs"]["seg"] == "seg.dcm"
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=sender).status_code == 409
    with api.state.factory() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.study_instance_uid == study)
        ).all()
    assert "job retry" in actions


def test_retry_refuses_a_job_whose_study_changed(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    files = write_ct_study(tmp_path / "ct")
    study = _stow(api, files[:3], api.tokens[Role.SENDER])
    sender = api.headers(Role.SENDER)
    job_id = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=sender).json()[
        "id"
    ]
    run_queued_jobs(api.state, settings)
    _stow(api, files[3:], api.tokens[Role.SENDER])  # the rest of the study arrives late
    response = api.client.post(f"/v1/jobs/{job_id}/retry", headers=sender)
    assert response.status_code == 409 and "changed since" in response.json()["detail"]


def test_a_sender_learns_nothing_about_studies_it_did_not_send(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    study = _stow(api, write_ct_study(tmp_path / "ct"), api.tokens[Role.SENDER])
    owner = api.headers(Role.SENDER)
    job_id = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=owner).json()[
        "id"
    ]
    run_queued_jobs(api.state, settings)  # fails (no model), with an error text
    with api.state.factory() as session, session.begin():
        other, _ = create_token(session, "other-pacs", Role.SENDER)
    stranger = {"Authorization": f"Bearer {other}"}

    theirs = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=stranger)
    unknown = api.client.post("/v1/jobs", json={"study_instance_uid": "1.2.3.4"}, headers=stranger)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"].replace(study, "X") == unknown.json()["detail"].replace(
        "1.2.3.4", "X"
    )
    assert api.client.post(f"/v1/jobs/{job_id}/retry", headers=stranger).status_code == 404

    # The sender that stored it gets the id and state only: no error text, no results.
    mine = api.client.post("/v1/jobs", json={"study_instance_uid": study}, headers=owner)
    assert mine.status_code == 202
    assert mine.json() == {"id": job_id, "study_instance_uid": study, "state": "failed"}
    admin = api.client.post(
        "/v1/jobs", json={"study_instance_uid": study}, headers=api.headers(Role.ADMIN)
    )
    assert admin.status_code == 202 and set(admin.json()) == {"id", "study_instance_uid", "state"}


def test_job_views_and_json_results_hide_server_paths(
    api: Api, settings: Settings, tmp_path: Path
) -> None:
    study = _stow(api, write_ct_study(tmp_path / "ct"), api.tokens[Role.SENDER])
    _install_ct_model(settings, tmp_path)
    # A routing rule names a model that is not installed: the error names the model stores.
    rule = {"modality": "CT", "models": ["retired-model"]}
    api.client.post("/v1/routing-rules", json=rule, headers=api.headers(Role.ADMIN))
    job_id = api.client.post(
        "/v1/jobs", json={"study_instance_uid": study}, headers=api.headers(Role.SENDER)
    ).json()["id"]
    runner = segment_runner(settings, rules=rule_source(api.state.factory))
    state = api.state
    work_once(WorkerContext(state.factory, state.store, state.results_root, runner, state.policy))
    reader = api.headers(Role.READER)
    job = api.client.get(f"/v1/jobs/{job_id}", headers=reader).json()
    assert job["state"] == "failed" and "retired-model" in job["error"], job["error"]
    _no_server_paths(json.dumps(job), settings)
    listed = api.client.get("/v1/jobs", headers=reader).text
    _no_server_paths(listed, settings)
