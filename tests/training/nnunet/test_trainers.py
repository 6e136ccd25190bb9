"""nnUNetTrainerMarginal's loss against nnU-Net's own DC_and_CE loss with deep supervision.

Both losses are built by the trainers themselves (``_build_loss``: nnU-Net's Dice + CE, its
deep-supervision weights) from hand-written tiny plans with four stages (three supervised
outputs), and evaluated on random logits and label maps; no network is trained here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.service.inference.nnunet.conftest import plans as tiny_plans
from training.nnunet.environment import nnunet_folders
from training.nnunet.network import find_trainer_class
from training.nnunet.trainers import (
    MISSING_LABELS,
    missing_labels,
    nnUNetTrainerMarginal,
    with_missing_labels,
)

BACKGROUND, LIVER, SPLEEN, KIDNEY = 0, 1, 2, 3
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3}
#: Network output shapes of the four-stage plans: full, half and quarter in-plane resolution.
SCALES = ((16, 32, 32), (16, 16, 16), (8, 8, 8))
CASES = ("case_a", "case_b")


def _plans(batch_dice: bool) -> dict[str, Any]:
    plans = tiny_plans()
    config = plans["configurations"]["3d_fullres"]
    config["batch_dice"] = batch_dice
    arch = config["architecture"]["arch_kwargs"]
    arch.update(
        n_stages=4,
        features_per_stage=[4, 8, 8, 16],
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        n_conv_per_stage=[1, 1, 1, 1],
        n_conv_per_stage_decoder=[1, 1, 1],
    )
    return plans


def _dataset(ignore: bool = False, missing: dict[str, list[str]] | None = None) -> dict[str, Any]:
    labels = {**LABELS, "ignore": 4} if ignore else dict(LABELS)
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 2}
    dataset["file_ending"] = ".nii.gz"
    return with_missing_labels(dataset, missing) if missing is not None else dataset


@pytest.fixture(autouse=True)
def _nnunet_folders(tmp_path: Path) -> Iterator[None]:
    """nnU-Net's trainer makes its output folder under ``nnUNet_results`` when built."""
    with nnunet_folders(tmp_path):
        yield


def _loss(trainer: str, dataset: dict[str, Any], batch_dice: bool = False) -> tuple[Any, Any]:
    """The trainer and the loss it builds."""
    cls = find_trainer_class(trainer)
    plans = {**_plans(batch_dice), "continue_training": False}
    built = cls(copy.deepcopy(plans), "3d_fullres", 0, dataset, torch.device("cpu"))
    return built, built._build_loss()


def _batch(seed: int, lacking: tuple[int, ...] = (), ignore: bool = False) -> tuple[list, list]:
    """Deep-supervision logits (requiring grad) and label maps.

    The label maps hold liver and spleen blocks, and a kidney block unless the cases lack it.
    """
    generator = torch.Generator().manual_seed(seed)
    logits, targets = [], []
    for shape in SCALES:
        values = torch.randn(2, 4, *shape, generator=generator)
        values[:, BACKGROUND] += 2.0  # a network that mostly says background
        logits.append(values.requires_grad_(True))
        target = torch.zeros(2, 1, *shape)
        i, j, k = (s // 4 for s in shape)
        target[:, :, :i, :j, :k] = LIVER
        target[:, :, -i:, -j:, -k:] = SPLEEN
        if KIDNEY not in lacking:
            target[:, :, i : 2 * i, -j:, :k] = KIDNEY
        if ignore:
            target[1, :, -i:, :j, -k:] = 4
        targets.append(target)
    return logits, targets


def _value(trainer: Any, loss: Any, logits: list, targets: list) -> torch.Tensor:
    if isinstance(trainer, nnUNetTrainerMarginal):
        trainer._set_batch({"keys": list(CASES), "target": targets})
    return loss(logits, targets)  # type: ignore[no-any-return]


def _swapped(logits: list, cases: tuple[int, ...] = (0, 1)) -> list:
    """The logits with background and kidney exchanged in ``cases``."""
    out = []
    for tensor in logits:
        moved = tensor.detach().clone()
        for b in cases:
            moved[b, [BACKGROUND, KIDNEY]] = tensor[b, [KIDNEY, BACKGROUND]].detach()
        out.append(moved)
    return out


@pytest.mark.parametrize(("batch_dice", "ignore"), [(False, False), (True, False), (False, True)])
def test_with_every_label_the_loss_is_nnunets(batch_dice: bool, ignore: bool) -> None:
    logits, targets = _batch(0, ignore=ignore)
    reference_trainer, reference = _loss("nnUNetTrainer", _dataset(ignore), batch_dice)
    trainer, marginal = _loss("nnUNetTrainerMarginal", _dataset(ignore, {}), batch_dice)
    # nnU-Net's deep-supervision weights (1, 1/2, 0, normalised) are kept
    assert marginal.weight_factors == pytest.approx(reference.weight_factors)
    assert reference.weight_factors == pytest.approx((2 / 3, 1 / 3, 0.0))
    expected = _value(reference_trainer, reference, logits, targets)
    got = _value(trainer, marginal, logits, targets)
    assert abs(got.item() - expected.item()) <= 1e-6
    # a case listed as lacking nothing, and a dataset.json without the entry, are the same
    trainer, marginal = _loss("nnUNetTrainerMarginal", _dataset(ignore), batch_dice)
    assert abs(_value(trainer, marginal, logits, targets).item() - expected.item()) <= 1e-6


@pytest.mark.parametrize("batch_dice", [False, True])
def test_a_missing_label_and_background_are_one_class(batch_dice: bool) -> None:
    lacking = {case: ["kidney_left"] for case in CASES}
    trainer, marginal = _loss("nnUNetTrainerMarginal", _dataset(missing=lacking), batch_dice)
    reference_trainer, reference = _loss("nnUNetTrainer", _dataset(), batch_dice)
    logits, targets = _batch(1, lacking=(KIDNEY,))
    loss = _value(trainer, marginal, logits, targets)
    # moving probability between background and kidney (here: exchanging their logits)
    # changes nothing, since the case cannot tell them apart ...
    swapped = _value(trainer, marginal, _swapped(logits), targets)
    assert abs(swapped.item() - loss.item()) <= 1e-6
    # ... whereas nnU-Net's loss calls the kidney background, and the swap changes it
    full = _value(reference_trainer, reference, logits, targets)
    full_swapped = _value(reference_trainer, reference, _swapped(logits), targets)
    assert abs(full.item() - loss.item()) > 1e-2
    assert abs(full_swapped.item() - full.item()) > 1e-2


def test_cases_lacking_different_labels_share_a_batch() -> None:
    # case_a lacks the kidney, case_b contours everything
    dataset = _dataset(missing={"case_a": ["kidney_left"]})
    trainer, marginal = _loss("nnUNetTrainerMarginal", dataset)
    logits, targets = _batch(2, lacking=(KIDNEY,))
    # case_b has no kidney voxel either: there the kidney is known to be absent
    loss = _value(trainer, marginal, logits, targets).item()
    assert abs(_value(trainer, marginal, _swapped(logits, (0,)), targets).item() - loss) <= 1e-6
    assert abs(_value(trainer, marginal, _swapped(logits, (1,)), targets).item() - loss) > 1e-3


def test_the_missing_label_is_not_pushed_to_zero_on_background() -> None:
    lacking = {case: ["kidney_left"] for case in CASES}
    trainer, marginal = _loss("nnUNetTrainerMarginal", _dataset(missing=lacking))
    reference_trainer, reference = _loss("nnUNetTrainer", _dataset())
    logits, targets = _batch(3, lacking=(KIDNEY,))
    background = targets[0][:, 0] == BACKGROUND
    probabilities = torch.softmax(logits[0].detach(), dim=1)

    _value(reference_trainer, reference, logits, targets).backward()
    assert logits[0].grad is not None
    standard = logits[0].grad.clone()
    for tensor in logits:
        tensor.grad = None
    _value(trainer, marginal, logits, targets).backward()
    assert logits[0].grad is not None
    merged = logits[0].grad

    # nnU-Net's loss: a descent step lowers the kidney logit at every background voxel, and
    # moves probability from kidney to background there
    assert (standard[:, KIDNEY][background] > 0).all()
    split = standard / probabilities
    assert (split[:, KIDNEY][background] > split[:, BACKGROUND][background]).all()
    # marginal loss: it raises kidney and background together (their merged class is right)
    # and leaves their ratio alone: d/dz_k = p_k * d/d(merged logit) for both
    assert (merged[:, KIDNEY][background] < 0).all()
    ratio = merged / probabilities
    torch.testing.assert_close(ratio[:, KIDNEY], ratio[:, BACKGROUND], rtol=1e-4, atol=1e-9)


def test_a_label_listed_missing_must_not_be_in_the_label_map() -> None:
    lacking = {"case_b": ["kidney_left"]}
    trainer, _ = _loss("nnUNetTrainerMarginal", _dataset(missing=lacking))
    _, targets = _batch(4)  # with kidney voxels
    with pytest.raises(ValueError, match=r"case case_b: its label map holds labels \[3\]"):
        trainer._set_batch({"keys": list(CASES), "target": targets})


def test_missing_labels_travel_in_dataset_json() -> None:
    dataset = _dataset(ignore=True, missing={"a": ["spleen", "kidney_left"], "b": []})
    assert dataset["fedseg"][MISSING_LABELS] == {"a": ["kidney_left", "spleen"]}
    assert missing_labels(dataset) == {"a": frozenset({SPLEEN, KIDNEY})}
    with pytest.raises(ValueError, match=r"fedseg.missing_labels.a: \['ignore'\]"):
        with_missing_labels(_dataset(ignore=True), {"a": ["ignore"]})
    with pytest.raises(ValueError, match=r"\['pancreas'\] are not labels"):
        with_missing_labels(_dataset(), {"a": ["pancreas"]})
