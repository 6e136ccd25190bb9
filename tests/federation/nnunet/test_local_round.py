"""A site's round: nnU-Net's preprocessor and trainer from the global weights, on its own cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.nnunet.federated_plans import SharedPlans
from training.nnunet.local_round import PreparedSite, RoundSettings, local_round, prepare_site
from training.nnunet.trainer_defaults import INITIAL_LR, ITERATIONS_PER_EPOCH

SETTINGS = RoundSettings(epochs=1, iterations_per_epoch=2, rounds=2, initial_lr=0.01, seed=3)


def test_a_round_trains_nnunets_trainer_from_the_global_weights(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    prepared = prepare_site(sites["site-a"], tiny_plans, tmp_path / "site-a")
    assert prepared.cases == 2
    assert prepared.labels == {"liver", "spleen"}
    # nnU-Net's preprocessed cases, with the federation's label values
    folder = (
        tmp_path / "site-a" / "preprocessed" / tiny_plans.dataset_name / "nnUNetPlans_3d_fullres"
    )
    assert len(list(folder.glob("*.b2nd"))) == 4  # image and segmentation of each case

    first = local_round(prepared, None, SETTINGS, server_round=1)
    assert first.cases == 2
    assert np.isfinite(first.loss)
    second = local_round(prepared, first.arrays, SETTINGS, server_round=2)
    assert set(second.arrays) == set(first.arrays)
    # nnU-Net's deep-supervision loss trains the full- and half-resolution outputs; it weighs
    # the lowest-resolution output (seg_layers.0) zero, so that one stays
    seg_layers = sorted(k for k in first.arrays if ".seg_layers." in k and k.endswith("weight"))
    assert seg_layers == [f"decoder.seg_layers.{i}.weight" for i in range(3)]
    for key in seg_layers[1:]:
        assert not np.array_equal(second.arrays[key], first.arrays[key]), key
    assert np.array_equal(second.arrays[seg_layers[0]], first.arrays[seg_layers[0]])
    # it started from the global weights: a few small steps stay close to them
    key = "encoder.stages.0.0.convs.0.conv.weight"
    start_gap = np.abs(second.arrays[key] - first.arrays[key]).max()
    fresh = local_round(prepared, None, SETTINGS, server_round=2)
    assert start_gap < np.abs(fresh.arrays[key] - first.arrays[key]).max()


def test_a_site_lacking_a_label_marks_its_background_ignore(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    dataset = json.loads(json.dumps(tiny_plans.dataset))
    dataset["labels"] = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "ignore": 4}
    shared = SharedPlans(tiny_plans.plans, dataset, tiny_plans.fingerprint)
    ignore = RoundSettings(partial_labels="ignore")
    assert ignore.trainer == "nnUNetTrainer"
    prepared = prepare_site(sites["site-b"], shared, tmp_path / "site-b", ignore)
    assert prepared.labels == {"liver", "spleen"}
    assert _label_values(prepared) == [1, 2, 4]  # no voxel is called background
    assert "missing_labels" not in json.loads(prepared.dataset_path.read_text())["fedseg"]


def test_a_site_lacking_a_label_lists_it_for_the_marginal_loss(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    dataset = json.loads(json.dumps(tiny_plans.dataset))
    dataset["labels"] = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "ignore": 4}
    shared = SharedPlans(tiny_plans.plans, dataset, tiny_plans.fingerprint)
    assert RoundSettings().partial_labels == "marginal"
    assert RoundSettings().trainer == "nnUNetTrainerMarginal"
    prepared = prepare_site(sites["site-b"], shared, tmp_path / "site-b")
    # background stays background; the trainer learns from dataset.json what each case lacks
    assert _label_values(prepared) == [0, 1, 2]
    written = json.loads(prepared.dataset_path.read_text())
    assert written["labels"] == dataset["labels"]
    assert written["fedseg"]["missing_labels"] == {
        f"site-b_p000{n}_01": ["kidney_left"] for n in (1, 2, 3)
    }
    # nnU-Net's own loss on these label maps would call the kidney background: refused
    with pytest.raises(ValueError, match="train with nnUNetTrainerMarginal"):
        local_round(prepared, None, RoundSettings(trainer="nnUNetTrainer"), server_round=1)
    with pytest.raises(ValueError, match="choose one of marginal, ignore"):
        RoundSettings(partial_labels="drop")  # type: ignore[arg-type]


@pytest.mark.parametrize("trainer", ["nnUNetTrainer", "nnUNetTrainerMarginal"])
def test_round_defaults_are_the_installed_nnunet_trainers(
    tiny_plans: SharedPlans, tmp_path: Path, trainer: str
) -> None:
    """RoundSettings and nnU-Net run settings default to what nnU-Net's trainer sets itself."""
    import torch

    from training.nnunet.environment import nnunet_folders
    from training.nnunet.federated_plans import CONFIGURATION
    from training.nnunet.network import find_trainer_class

    with nnunet_folders(tmp_path):
        built = find_trainer_class(trainer)(
            {**json.loads(json.dumps(tiny_plans.plans)), "continue_training": False},
            CONFIGURATION,
            "all",
            tiny_plans.dataset,
            torch.device("cpu"),
        )
    assert (built.num_iterations_per_epoch, built.initial_lr) == (
        ITERATIONS_PER_EPOCH,
        INITIAL_LR,
    )
    defaults = RoundSettings()
    assert (defaults.iterations_per_epoch, defaults.initial_lr) == (
        built.num_iterations_per_epoch,
        built.initial_lr,
    )


def _label_values(prepared: PreparedSite) -> list[int]:
    from service.nifti import read_nifti

    raw = prepared.work / "raw" / prepared.shared.dataset_name / "labelsTr"
    values = np.unique(np.concatenate([read_nifti(p)[0].ravel() for p in raw.iterdir()]))
    return [int(v) for v in values]


def test_weights_of_other_plans_are_refused(
    sites: dict[str, Path], tiny_plans: SharedPlans, tmp_path: Path
) -> None:
    prepared = prepare_site(sites["site-a"], tiny_plans, tmp_path / "site-a")
    with pytest.raises(ValueError, match="different plans"):
        local_round(prepared, {"x": np.zeros(1)}, SETTINGS, server_round=1)
