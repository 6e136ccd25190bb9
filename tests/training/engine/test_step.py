"""The one optimiser step of the segmentation, classification and federated loops."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from training.engine.step import (
    HeadTarget,
    StepSettings,
    deep_supervision_loss,
    partial_label_loss,
    train_step,
)
from training.losses import LabelSupervision, MarginalLoss
from training.models import ModelConfig, MultiTaskUNet, build_model

CONFIG = ModelConfig(heads={"liver": 3, "spleen": 3}, filters=(4, 8))


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn((2, 1, 8, 8, 8), generator=generator)
    liver = torch.randint(0, 3, (2, 8, 8, 8), generator=generator)
    spleen = torch.randint(0, 3, (2, 8, 8, 8), generator=generator)
    spleen[1][spleen[1] == 2] = 0  # the second case does not contour class 2
    return image, liver, spleen


def _targets(liver: torch.Tensor, spleen: torch.Tensor) -> dict[str, HeadTarget]:
    # The second case does not annotate spleen class 2: it is merged with background there.
    partial_spleen = [LabelSupervision.full(3), LabelSupervision.of([1])]
    return {
        "liver": HeadTarget(liver, [LabelSupervision.full(3)] * 2),
        "spleen": HeadTarget(spleen, partial_spleen),
    }


def _vector(model: MultiTaskUNet) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_step_is_zero_grad_forward_partial_loss_backward_step() -> None:
    model = build_model(CONFIG, seed=0)
    reference = copy.deepcopy(model)
    loss_fn = MarginalLoss(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    expected_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for seed in range(2):  # two steps: stale gradients would accumulate without zero_grad
        image, liver, spleen = _batch(seed)
        targets = _targets(liver, spleen)
        loss = train_step(optimizer, partial(partial_label_loss, model, image, targets, loss_fn))
        expected_optimizer.zero_grad()
        expected = sum(
            deep_supervision_loss(
                MarginalLoss(3),
                reference.segment(image, head),
                t.label,
                t.supervision,
            )
            for head, t in targets.items()
        )
        expected.backward()  # type: ignore[union-attr]
        expected_optimizer.step()
        assert loss == pytest.approx(float(expected))
    torch.testing.assert_close(_vector(model), _vector(reference))


def test_a_head_without_targets_is_not_trained() -> None:
    model = build_model(CONFIG, seed=1)
    before = [p.detach().clone() for p in model.heads["spleen"].parameters()]
    image, liver, _ = _batch(3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    targets = {"liver": HeadTarget(liver, [LabelSupervision.full(3)] * 2)}
    train_step(optimizer, partial(partial_label_loss, model, image, targets, MarginalLoss(3)))
    for old, new in zip(before, model.heads["spleen"].parameters(), strict=True):
        torch.testing.assert_close(old, new.detach())
    with pytest.raises(ValueError, match="at least one supervised head"):
        partial_label_loss(model, image, {}, MarginalLoss(2))


def test_gradient_clipping_bounds_the_step() -> None:
    image, liver, spleen = _batch(4)
    targets = _targets(liver, spleen)
    moved = {}
    for clip in (None, 1e-3):
        model = build_model(CONFIG, seed=2)
        start = _vector(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        compute = partial(partial_label_loss, model, image, targets, MarginalLoss(3))
        train_step(optimizer, compute, StepSettings(grad_clip=clip))
        moved[clip] = float((_vector(model) - start).norm())
    # Plain SGD with lr 1 moves the parameters by the gradient's norm.
    assert moved[None] > 1e-2
    assert moved[1e-3] == pytest.approx(1e-3, rel=1e-3)
    with pytest.raises(ValueError, match="grad_clip"):
        StepSettings(grad_clip=0.0)


def test_classification_loss_goes_through_the_same_step() -> None:
    from training.engine.classify import _class_loss

    model = build_model(ModelConfig(heads={"t": 2}, filters=(4, 8), classifier_classes=2), 0)
    cubes = torch.randn((4, 1, 8, 8, 8), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = [train_step(optimizer, partial(_class_loss, model, cubes, labels)) for _ in range(15)]
    assert losses[-1] < losses[0]
