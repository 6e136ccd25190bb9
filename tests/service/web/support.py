"""A finished PET job for the viewer and dashboard tests: STS_003 through a threshold model.

Imported as ``from tests.service.web.support import ...``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom

from service.api.multipart import write_related
from service.api.state import ServerState
from service.config import Settings
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from service.jobs.intake import enqueue_study
from service.jobs.runner import segment_runner
from service.jobs.worker import WorkerContext, work_once
from tests.service.inference.conftest import pointwise_model, threshold_manifest

DataDir = Callable[[str], Path]
PET_STUDY = "sts-pet/ibsi_validation/dicom/STS_003/PET/image"


def install_suv_threshold_model(settings: Settings, folder: Path) -> None:
    """A model labelling SUV > 4.5 as lesion, installed into the settings' model store."""
    manifest = threshold_manifest(
        normalisation={"kind": "suv", "low": 0.0, "high": 10.0}, spacing=(4.0, 4.0, 4.0)
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(folder / "bundle", model, manifest)
    ModelStore(roots=(settings.model_store,)).install(bundle.path)


def pet_stow_body(data_dir: DataDir) -> tuple[bytes, str, str]:
    """The STS_003 PET series as a STOW-RS body: (body, content type, study UID)."""
    files = sorted(data_dir(PET_STUDY).glob("*.dcm"))
    body, content_type = write_related([f.read_bytes() for f in files], "application/dicom")
    return body, content_type, str(pydicom.dcmread(files[0]).StudyInstanceUID)


def run_queued_jobs(state: ServerState, settings: Settings) -> None:
    """Run every queued job with the real segment runner, in this thread."""
    ctx = WorkerContext(
        factory=state.factory,
        store=state.store,
        results_root=state.results_root,
        runner=segment_runner(settings),
        policy=state.policy,
        quiet_period_s=3600,
    )
    while work_once(ctx):
        pass


def finish_job(state: ServerState, settings: Settings, study_uid: str) -> str:
    """Queue the stored study, run it, and return the job id."""
    job = enqueue_study(state.factory, study_uid, state.policy)
    run_queued_jobs(state, settings)
    return job.id
