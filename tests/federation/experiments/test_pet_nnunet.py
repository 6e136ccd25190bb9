"""The PET experiment with federated nnU-Net: a smoke run on real sts-pet patients.

One smoke run (about 45 s on 2 cores) is shared by the tests: its split, its training rounds,
its scores (recomputed here from the served bundle and the reference masks) and its report.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from federation.cli import experiment_cmd
from federation.experiments import pet_nnunet, pet_nnunet_report
from federation.experiments.pet_common import TestSplit, hold_out, site_split
from federation.experiments.pet_nnunet import (
    CENTRALISED,
    FEDERATED,
    LOCAL,
    METHODS,
    SMOKE,
    THRESHOLD,
    Outcome,
    Patients,
)
from federation.experiments.report import RunInfo
from service.dicom.volume import read_volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Mirroring
from service.nifti import read_nifti
from training.metrics import dice


@pytest.fixture(scope="module")
def smoke(
    data_dir: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Outcome, Path, Path]:
    """The smoke run's outcome, its report and the sts-pet folder."""
    data = data_dir("sts-pet")
    root = tmp_path_factory.mktemp("pet-nnunet")
    outcome = pet_nnunet.run(data, SMOKE, root / "work")
    run = RunInfo("fedseg experiment pet --backend nnunet --smoke", 1.0, smoke=True)
    return outcome, pet_nnunet_report.write(outcome, root / "out", run), data


def test_hold_out_is_seeded_disjoint_and_keeps_a_training_patient() -> None:
    train = [f"STS_{i:03d}" for i in range(1, 12)]
    kept, validation = hold_out(train, 0.2, seed=0, site=1)
    assert sorted(kept + validation) == train and not set(kept) & set(validation)
    assert len(validation) == 2
    assert hold_out(train, 0.2, seed=0, site=1) == (kept, validation)
    assert hold_out(train, 0.2, seed=0, site=2) != (kept, validation)
    assert hold_out(["a", "b"], 0.9, seed=0, site=0)[0]  # one always trains
    with pytest.raises(ValueError, match="at least two"):
        hold_out(["a"], 0.2, seed=0, site=0)


def test_the_test_split_opens_once() -> None:
    split = TestSplit(["STS_003"])
    assert split.open() == ("STS_003",)
    with pytest.raises(RuntimeError, match="already scored"):
        split.open()
    assert split.looks == 1


def test_split_keeps_the_unet_test_patients_and_never_trains_on_held_out_ones(
    smoke: tuple[Outcome, Path, Path],
) -> None:
    outcome, _, data = smoke
    parts = site_split(sorted(Patients(data).sources), SMOKE.split)
    for site, part in zip(outcome.sites, parts, strict=True):
        assert site.test == tuple(part["test"])  # the U-Net backend's test patients
        assert sorted(site.train + site.validation) == part["train"]
        assert not set(site.train) & set(site.validation)
        # the built folder holds the training patients only
        assert outcome.site_cases[site.name] == len(site.train)
    assert outcome.site_cases["pooled"] == sum(len(s.train) for s in outcome.sites)
    assert outcome.test.patients == tuple(p for s in outcome.sites for p in s.test)
    assert outcome.looks == 1


def test_every_round_trained_and_was_aggregated(smoke: tuple[Outcome, Path, Path]) -> None:
    outcome, _, _ = smoke
    assert set(outcome.trained) == {FEDERATED, CENTRALISED} | {
        f"{LOCAL} {s.name}" for s in outcome.sites
    }
    for trained in outcome.trained.values():
        assert trained.rejected == 0
        assert len(trained.losses) == SMOKE.rounds and np.isfinite(trained.losses).all()
        assert trained.chosen in trained.by_round
        assert 0.0 <= trained.validation_dice <= 1.0


def test_scores_are_those_of_the_served_predictions(smoke: tuple[Outcome, Path, Path]) -> None:
    outcome, _, data = smoke
    bundle = ModelBundle.load(outcome.trained[FEDERATED].model().bundle)
    segmenter = open_segmenter(bundle, mirroring=Mirroring.OFF)  # as the experiment serves it
    results = outcome.test.results
    for index, patient in enumerate(outcome.test.patients):
        nifti = data / "ibsi_validation" / "nifti" / patient
        volume = read_volume(nifti.parent.parent / "dicom" / patient / "PET" / "image")
        truth = read_nifti(nifti / "PET_mask.nii.gz")[0] > 0
        predicted = segmenter.segment(volume, None, volume.array).labels == 1
        assert outcome.test.voxels[FEDERATED][index] == int(predicted.sum())
        assert results[FEDERATED]["dice"][index] == pytest.approx(dice(predicted, truth))
        threshold = volume.array >= 2.5
        assert results[THRESHOLD]["dice"][index] == pytest.approx(dice(threshold, truth))
    assert any(outcome.test.voxels[FEDERATED])  # the federated model predicts some lesion


def test_report_structure(smoke: tuple[Outcome, Path, Path]) -> None:
    outcome, report_path, _ = smoke
    report = report_path.read_text()
    assert (report_path.parent / "pet-nnunet.png").is_file()
    n = len(outcome.test.patients)
    for metric in ("dice", "jaccard", "re_suv_max", "re_suv_peak", "re_mtv_ml", "re_tlg"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {metric} |"))
        assert len(re.findall(rf"\(n={n}\)", row)) == len(METHODS)
        p_values = [float(v) for v in row.strip(" |").split(" | ")[-len(pet_nnunet.PAIRS) :]]
        assert all(0.0 <= p <= 1.0 for p in p_values)
    assert "**Looks at the test split in this run: 1**" in report
    for name, trained in outcome.trained.items():
        assert f"| {name} | {len(trained.validation)} |" in report
    assert "Seed study S0" in report and "SUV ≥ 2.5" in report


def test_cli_runs_the_nnunet_backend(
    data_dir: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, bool, str, Path]] = []

    def fake_main(out: Path, smoke: bool, command: str, data: Path) -> Path:
        calls.append((out, smoke, command, data))
        return out / "pet-nnunet.md"

    monkeypatch.setattr(pet_nnunet, "main", fake_main)
    root = data_dir("sts-pet").parent
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    argv = ["experiment", "pet", "--backend", "nnunet", "--smoke", "--out", str(tmp_path)]
    args = parser.parse_args([*argv, "--data", str(root)])
    assert args.handler(args) == 0
    assert calls == [(tmp_path, True, calls[0][2], root / "sts-pet")]
