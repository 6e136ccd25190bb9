"""Two nnU-Net site folders built by ``dataset build --format nnunet`` from synthetic exports,
and nnU-Net's own fingerprint and plans of their pooled cases (the references)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from federation.nnunet.fingerprint import (
    FingerprintBins,
    SiteFingerprint,
    pool,
    site_fingerprint_of,
)
from federation.nnunet.plans import SharedPlans, SiteDataset, federation_dataset_json, plan
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import read_volume
from tests.training.sitedata.clinic import patient, write_rtstruct_file
from training.nnunet.fingerprint import samples_per_case

#: Foreground samples over the pooled dataset (nnU-Net uses 10^8; small keeps the test quick).
SAMPLES = 40_000
BINS = FingerprintBins(intensity=0.25, spacing=1e-3, shape=1, relative=1e-4)
#: Per site: patient numbers, voxel spacing (mm), grid and the mean HU of its organs.
#: nnU-Net's name of the pooled dataset (the federation plans under the same name).
POOLED = "Dataset619_Pooled"
SCANNERS = {
    "site-a": ((1, 2), (2.0, 2.0, 3.0), (24, 20, 8), 55.0),
    "site-b": ((3, 4, 5), (1.5, 1.5, 2.5), (30, 26, 10), 70.0),
}


def export_case(
    root: Path, number: int, spacing: tuple[float, ...], shape: tuple[int, ...], hu: float
) -> None:
    """A CT with noisy body and organs, and an RTSTRUCT contouring liver and spleen."""
    rng = np.random.default_rng(number)
    who = patient(number)
    spec = SeriesSpec(
        modality="CT",
        patient_id=who.patient_id,
        patient_name=who.name,
        patient_birth_date=who.birth_date,
        uid_seed=f"fingerprint-{number}",
        series_description="Planning CT",
    )
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-20.0, -15.0, 100.0)
    values = np.full(shape, -1000.0, dtype=np.float32)
    values[1:-1, 1:-1, :] = rng.normal(20.0, 25.0, (shape[0] - 2, shape[1] - 2, shape[2]))
    liver = np.zeros(shape, dtype=bool)
    liver[2:10, 2 : shape[1] // 2, 1:-1] = True
    spleen = np.zeros(shape, dtype=bool)
    spleen[12:20, 10 : shape[1] - 2, 2:-2] = True
    values[liver] = rng.normal(hu, 12.0, int(liver.sum()))
    values[spleen] = rng.normal(hu + 10, 30.0, int(spleen.sum()))
    write_series(root / "ct", values, affine, spec)
    volume = read_volume(root / "ct")
    write_rtstruct_file(root / "rs" / "RS.dcm", volume, {"Liver": liver, "Spleen": spleen})


def nnunet_fingerprint(
    sites: dict[str, Path], tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """nnU-Net's own fingerprint of a dataset holding every site's cases."""
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor

    raw = tmp / "nnUNet_raw"
    pooled = raw / POOLED
    for part in ("imagesTr", "labelsTr"):
        (pooled / part).mkdir(parents=True)
        for folder in sites.values():
            for path in (folder / part).iterdir():
                shutil.copy(path, pooled / part / path.name)
    dataset = json.loads((next(iter(sites.values())) / "dataset.json").read_text())
    dataset["numTraining"] = len(list((pooled / "labelsTr").iterdir()))
    (pooled / "dataset.json").write_text(json.dumps(dataset))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp / "preprocessed"))
    extractor = fingerprint_extractor.DatasetFingerprintExtractor(pooled.name, num_processes=1)
    extractor.num_foreground_voxels_for_intensitystats = SAMPLES
    extractor.show_progress_bar = False
    return extractor.run(overwrite_existing=True)  # type: ignore[no-any-return]


def nnunet_plans(
    sites: dict[str, Path], tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, object]:
    """nnU-Net's fingerprint extractor and planner on a dataset holding every site's cases."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
        ExperimentPlanner,
    )

    nnunet_fingerprint(sites, tmp, monkeypatch)
    return ExperimentPlanner(POOLED).plan_experiment()  # type: ignore[no-any-return]


def federated_plans(sites: dict[str, Path]) -> SharedPlans:
    """The server's plans from what the sites send (descriptions and fingerprints, as JSON)."""
    described = [SiteDataset.of_folder(folder) for folder in sites.values()]
    # what travels: each site's description and fingerprint as JSON
    sent = [json.dumps(d.as_json()) for d in described]
    received = [SiteDataset.from_json(json.loads(text)) for text in sent]
    per_case = samples_per_case(sum(d.cases for d in received), SAMPLES)
    fingerprints = [
        SiteFingerprint.from_json(
            json.loads(json.dumps(site_fingerprint_of(f, per_case, BINS).as_json()))
        )
        for f in sites.values()
    ]
    dataset = federation_dataset_json(received, POOLED)
    return plan(pool(fingerprints).nnunet_fingerprint(), dataset, POOLED)


def tiny(shared: SharedPlans) -> SharedPlans:
    """The shared plans with a tiny 3d_fullres network, so a round takes seconds on a CPU."""
    from training.nnunet.phantom_models import PhantomModelSpec, shrink_plans
    from training.phantoms import PhantomModality

    spec = PhantomModelSpec(
        "tiny", 1, PhantomModality.CT, patch_size=(8, 16, 16), features=(4, 8, 8, 16)
    )
    plans = shrink_plans(json.loads(json.dumps(shared.plans)), spec)
    return SharedPlans(plans, shared.dataset, shared.fingerprint)
