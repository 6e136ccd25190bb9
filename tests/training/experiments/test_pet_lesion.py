"""The pet-lesion experiment at smoke size: split hygiene, calibration and the report's columns."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.imaging.resample import Grid
from service.nifti import write_nifti
from training.data.pet_negatives import NegativeSampling, negative_crops
from training.data.preprocess import Prepared
from training.engine.calibration import (
    calibrate_threshold,
    decide,
    fold_threshold,
    largest_component,
)
from training.experiments import pet_lesion
from training.models import ModelConfig, build_model


def _cases(root: Path, n: int) -> Path:
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    rng = np.random.default_rng(0)
    for c in range(n):
        labels = np.zeros((24, 24, 24), dtype=np.uint8)
        labels[8 + c % 4 : 15 + c % 4, 9:16, 8:14] = 1
        image = (0.8 + 6.0 * labels + rng.normal(0, 0.2, labels.shape)).astype(np.float32)
        write_nifti(root / f"STS_{c:03d}" / "image.nii.gz", np.clip(image, 0, None), affine)
        write_nifti(root / f"STS_{c:03d}" / "label.nii.gz", labels, affine)
    return root


def test_split_is_disjoint_and_keeps_train_only_patients_in_train() -> None:
    ids = [f"STS_{i:03d}" for i in range(40)]
    plain = pet_lesion.split(ids, n_val=4, n_test=10, seed=0)
    reserved = pet_lesion.split(ids, n_val=4, n_test=10, seed=0, train_only=[plain["test"][0]])
    for parts in (plain, reserved):
        assert sorted(parts["train"] + parts["val"] + parts["test"]) == ids
        assert not set(parts["test"]) & (set(parts["train"]) | set(parts["val"]))
        assert len(parts["test"]) == 10 and len(parts["val"]) == 4
    assert plain["test"][0] in reserved["train"]
    # Patients not reserved keep their place: the other nine test patients are unchanged.
    assert set(plain["test"][1:]) <= set(reserved["test"])


def test_experiment_at_smoke_size_never_trains_on_test_and_reports_every_column(
    tmp_path: Path,
) -> None:
    data = _cases(tmp_path / "data", 7)
    out = tmp_path / "run"
    torch.set_num_threads(1)
    argv = ["--data", str(data), "--out", str(out), "--steps", "2", "--validate-every", "2"]
    assert pet_lesion.main([*argv, "--n-val", "2", "--n-test", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    test = set(results["split"]["test"])
    assert len(test) == 3 and set(results["tested_on"]) == test
    assert not test & set(results["trained_on"])
    assert not test & set(results["calibrated_on"])
    assert set(results["split"]["val"]) == set(results["calibrated_on"])
    assert (out / "calibrated.pt").is_file()
    table = (out / "report.md").read_text().splitlines()
    header = table[0]
    for method in pet_lesion.METHODS:
        assert pet_lesion.METHOD_NAMES[method] in header
    assert "p (U-Net vs 41 % SUVmax)" in header and "p (U-Net vs SUV ≥ 2.5)" in header
    rows = {line.split("|")[1].strip() for line in table[2:]}
    assert rows == {pet_lesion.METRIC_NAMES[m] for m in pet_lesion.REPORTED}
    for line in table[2:]:
        assert len(line.strip("|").split("|")) == len(header.strip("|").split("|"))


def test_leak_guard_refuses_a_test_patient_in_training() -> None:
    parts = {"train": ["STS_001"], "val": ["STS_002"], "test": ["STS_003"]}
    pet_lesion._check_no_leak(parts, ["STS_001", "STS_001-wholebody#0", "STS_002"])
    with pytest.raises(RuntimeError, match="STS_003"):
        pet_lesion._check_no_leak(parts, ["STS_003-wholebody#2"])


def test_calibration_picks_the_threshold_that_matches_the_truth() -> None:
    truth = np.zeros((20, 20, 20), bool)
    truth[5:15, 5:15, 5:15] = True
    # A margin that is positive over a shell around the truth: arg-max over-segments.
    distance = np.maximum.reduce(
        [np.abs(np.indices(truth.shape)[a] - 9.5) for a in range(3)]
    ).astype(np.float32)
    margin = 3.0 - distance / 2.0  # > 0 up to distance 6 (the truth ends at 5)
    assert decide(margin, 0.5, keep_largest=False).sum() > truth.sum()
    calibration = calibrate_threshold([margin], [truth])
    chosen = decide(margin, calibration.threshold, calibration.keep_largest)
    assert calibration.threshold > 0.5
    assert chosen.sum() == truth.sum()
    assert calibration.val_dice == pytest.approx(1.0)
    # Equal Dice with and without the component filter: the simpler rule wins the tie.
    assert not calibration.keep_largest


def test_largest_component_and_folded_threshold() -> None:
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 1:3, 1:3] = True
    mask[5:9, 5:9, 5:9] = True
    assert largest_component(mask).sum() == 64
    model = build_model(ModelConfig(heads={"pet-lesion": 2}), seed=0).eval()
    folded = fold_threshold(model, "pet-lesion", 0.8)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        plain, shifted = model(x, "pet-lesion"), folded(x, "pet-lesion")
    probability = torch.softmax(plain, dim=1)[0, 1]
    assert torch.equal(shifted.argmax(1)[0] == 1, probability > 0.8)


def test_negative_crops_avoid_the_tumour_and_keep_true_labels() -> None:
    shape = (60, 60, 60)
    suv = np.full(shape, 1.0, np.float32)
    labels = np.zeros(shape, np.int64)
    labels[5:10, 5:10, 5:10] = 1
    suv[5:10, 5:10, 5:10] = 8.0
    suv[45:50, 45:50, 45:50] = 6.0  # a hot organ far from the tumour
    prepared = Prepared(suv / 10, labels, Grid(shape=shape, affine=np.diag([4.0, 4, 4, 1])))
    crops = negative_crops(prepared, suv, NegativeSampling(hot=3, body=2, size=16))
    assert len(crops) == 5
    for crop in crops[:3]:
        assert crop.image.shape == (16, 16, 16)
        assert crop.labels is not None and not crop.labels.any()
        assert crop.image.max() == pytest.approx(0.6)
