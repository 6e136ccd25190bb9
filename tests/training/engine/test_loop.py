import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from service.imaging.resample import Grid
from training.data.preprocess import Prepared
from training.engine import TrainConfig, load_model, predict_labels, train
from training.engine.step import deep_supervision_loss
from training.losses import LabelSupervision, MarginalLoss
from training.metrics import dice
from training.models import ModelConfig, build_model
from training.models.blocks import SegmentationHead
from training.tasks import TASKS, TaskName

TASK = dataclasses.replace(TASKS[TaskName.PET_LESION], patch_size=(24, 24, 24))


def _phantom(seed: int) -> Prepared:
    """A noisy 24³ volume with one bright ellipsoid lesion."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(24),) * 3, indexing="ij")
    centre = rng.uniform(9, 15, 3)
    inside = ((i - centre[0]) / 6) ** 2 + ((j - centre[1]) / 5) ** 2 + ((k - centre[2]) / 4) ** 2
    labels = (inside <= 1).astype(np.int64)
    image = (0.1 + 0.5 * labels + rng.normal(0, 0.05, labels.shape)).astype(np.float32)
    return Prepared(image=image, labels=labels, grid=Grid((24, 24, 24), np.eye(4)))


def _config(steps: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=2, learning_rate=1e-2, validate_every=20, seed=3, progress=False
    )


def test_overfits_tiny_phantom_and_resumes(tmp_path: Path) -> None:
    cases = [_phantom(0), _phantom(1)]
    model = build_model(ModelConfig(heads={TASK.name.value: 2}, filters=(8, 16, 32, 64)), seed=0)
    result = train(model, TASK, cases, cases, _config(60), tmp_path)
    assert result.best_dice > 0.9
    best, payload = load_model(tmp_path / "best.pt")
    pred = predict_labels(best, cases[0].image, TASK.name.value, TASK.patch_size)
    truth = cases[0].labels
    assert truth is not None and dice(pred == 1, truth == 1) > 0.9
    assert payload["val_dice"] == result.best_dice
    assert payload["labels"] == ["lesion"]  # export checks these against the label table
    assert json.loads((tmp_path / "result.json").read_text())["steps"] == 60
    # Resuming a finished run to a later step continues from the saved state.
    resumed = train(model, TASK, cases, cases, _config(80), tmp_path)
    assert resumed.steps == 80 and len(resumed.history) == len(result.history) + 1


def test_same_seed_gives_same_weights(tmp_path: Path) -> None:
    cases = [_phantom(0)]
    weights = []
    for run in ("a", "b"):
        model = build_model(ModelConfig(heads={TASK.name.value: 2}, filters=(4, 8)), seed=1)
        train(model, TASK, cases, cases, _config(4), tmp_path / run)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_deep_supervision_trains_the_coarse_outputs(tmp_path: Path) -> None:
    cases = [_phantom(0)]
    config = ModelConfig(heads={TASK.name.value: 2}, filters=(4, 8, 16), deep_supervision=True)
    model = build_model(config, seed=1)
    head = model.heads[TASK.name.value]
    assert isinstance(head, SegmentationHead)
    deep = head.deep
    assert len(deep) == 1
    before = [p.detach().clone() for p in deep.parameters()]
    train(model, TASK, cases, cases, _config(2), tmp_path)
    # The coarse output only moves when the loss reaches it.
    assert all(not torch.equal(a, b) for a, b in zip(before, deep.parameters(), strict=True))


def test_deep_supervision_loss_weights_levels_and_checks_sizes() -> None:
    loss_fn = MarginalLoss(2)
    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    label[..., 2:6, 2:6, 2:6] = 1
    supervision = [LabelSupervision.full(2)]
    full, coarse = torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 4, 4, 4)
    expected = (
        loss_fn(full, label, supervision)
        + 0.5 * loss_fn(coarse, label[..., ::2, ::2, ::2], supervision)
    ) / 1.5
    got = deep_supervision_loss(loss_fn, [full, coarse], label, supervision)
    assert torch.allclose(got, expected)
    assert torch.equal(
        deep_supervision_loss(loss_fn, [full], label, supervision),
        loss_fn(full, label, supervision),
    )
    with pytest.raises(ValueError, match="deep-supervision output 1"):
        deep_supervision_loss(loss_fn, [full, torch.randn(1, 2, 3, 3, 3)], label, supervision)
