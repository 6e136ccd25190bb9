"""A finished PET job for the viewer and dashboard tests: STS_003 through a threshold model.

Imported as ``from tests.service.web.support import ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom

from service.api.state import ServerState
from service.config import Settings
from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import Volume, read_volume
from service.dicomweb.multipart import write_related
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from service.jobs.intake import enqueue_study
from service.jobs.runner import segment_runner
from service.jobs.worker import JobRunner, WorkerContext, work_once
from service.labels.registry import get_table
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, write_outputs
from service.results.provenance import AlgorithmIdentity
from tests.result_series import GEOMETRIES, SHAPE, affine_for
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


def run_queued_jobs(
    state: ServerState, settings: Settings, runner: JobRunner | None = None
) -> None:
    """Run every queued job with the real segment runner (or ``runner``), in this thread."""
    ctx = WorkerContext(
        factory=state.factory,
        store=state.store,
        results_root=state.results_root,
        runner=runner or segment_runner(settings),
        policy=state.policy,
        quiet_period_s=3600,
    )
    while work_once(ctx):
        pass


def finish_job(
    state: ServerState, settings: Settings, study_uid: str, runner: JobRunner | None = None
) -> str:
    """Queue the stored study, run it, and return the job id."""
    job = enqueue_study(state.factory, study_uid, state.policy)
    run_queued_jobs(state, settings, runner)
    return job.id


#: Marker phantoms: background and marker values (HU for CT, Bq/mL for PET), and the threshold
#: between them that the marker runner segments at.
MARKER_VALUES = {"CT": (0.0, 300.0, 150.0), "PT": (5000.0, 40000.0, 20000.0)}


def marker_mask(affine: np.ndarray) -> np.ndarray:
    """The voxels of an asymmetric marker: the patient's right-anterior corner, slices 1 to 4.

    Right is the lowest LPS x and anterior the lowest y, found from the affine, so the marker
    lies in that corner whatever the stored order of the series.
    """
    i, j = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    x = affine[0, 0] * i + affine[0, 1] * j
    y = affine[1, 0] * i + affine[1, 1] * j
    corner = (x < np.percentile(x, 30)) & (y < np.percentile(y, 30))
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:, :, 1:5] = corner[:, :, None]
    return mask


def write_marker_phantom(folder: Path, modality: str, geometry: str) -> Volume:
    """A phantom series with the marker of :func:`marker_mask` in ``geometry`` (of
    ``tests.result_series``); inside the marker values grow with i and j, so each voxel's
    value is its own."""
    position, _ = GEOMETRIES[geometry]
    affine = affine_for(geometry)
    background, marker, _ = MARKER_VALUES[modality]
    values = np.full(SHAPE, background, dtype=np.float32)
    i, j, _ = np.indices(SHAPE)
    step = 10.0 if modality == "CT" else 1000.0
    inside = marker_mask(affine)
    values[inside] = (marker + step * i + step / 10 * j)[inside]
    pet = None
    if modality == "PT":
        pet = PetAcquisition(
            injected_dose_bq=3.7e8,
            injection_datetime=datetime(2024, 1, 1, 9, 0),
            series_datetime=datetime(2024, 1, 1, 10, 0),
            patient_weight_kg=70.0,
        )
    spec = SeriesSpec(
        modality=modality,
        patient_position=position,
        pet=pet,
        uid_seed=f"marker-{modality}-{geometry}",
        series_description=f"marker phantom {geometry}",
    )
    write_series(folder, values, affine, spec)
    return read_volume(folder)


def marker_runner(inputs: Sequence[Path], out_dir: Path, progress: object = None) -> None:
    """Segment a marker phantom by its threshold: a SEG and measurements, as a job writes them."""
    volume = read_volume(list(inputs))
    labels = (volume.array > MARKER_VALUES[volume.modality][2]).astype(np.uint16)
    table = get_table("pet-lesion" if volume.modality == "PT" else "ct-organs")
    formats = (ResultKind.SEG, ResultKind.MEASUREMENTS)
    algorithm = AlgorithmIdentity("marker threshold", "1.0")
    write_outputs(volume, labels, table, algorithm, out_dir, OutputOptions(formats=formats))
