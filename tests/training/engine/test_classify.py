"""Lesion classification head: cubes around tumours, training, validation and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.cli.main import main
from training.engine import TrainConfig, load_model
from training.engine.classify import LesionSet, lesion_cube, score, train_classifier
from training.models import ModelConfig, build_model
from training.phantoms import PhantomConfig, generate_dataset
from training.phantoms.config import PhantomModality, Size


def test_lesion_cube_is_centred_on_the_mask_and_padded() -> None:
    image = np.arange(10**3, dtype=np.float32).reshape(10, 10, 10)
    mask = np.zeros_like(image, dtype=bool)
    mask[1:4, 1:4, 1:4] = True  # centroid (2, 2, 2), near the corner
    cube = lesion_cube(image, mask, size=6)
    assert cube.shape == (6, 6, 6)
    assert cube[3, 3, 3] == image[2, 2, 2]
    assert cube[0, 0, 0] == image.min()  # outside the image: padded
    with pytest.raises(ValueError, match="empty"):
        lesion_cube(image, np.zeros_like(mask))


def _cubes(n: int, seed: int) -> LesionSet:
    """Benign: smooth bright ball; malignant: the same ball with a strong checker texture."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(8),) * 3, indexing="ij")
    ball = (((i - 3.5) ** 2 + (j - 3.5) ** 2 + (k - 3.5) ** 2) <= 9).astype(np.float32)
    checker = ((i + j + k) % 2 * 2 - 1).astype(np.float32)
    labels = np.arange(n) % 2
    cubes = [ball * (1 + 0.8 * c * checker) + rng.normal(0, 0.05, ball.shape) for c in labels]
    return LesionSet.stack(cubes, labels.tolist(), [str(x) for x in range(n)])


def test_classifier_learns_separable_lesions(tmp_path: Path) -> None:
    train_set, val_set = _cubes(8, 0), _cubes(10, 1)  # chance of AUC 1 untrained: 1/252
    model = build_model(
        ModelConfig(heads={"mr-tumour": 2}, filters=(4, 8), classifier_classes=2), 0
    )
    config = TrainConfig(steps=40, batch_size=4, learning_rate=1e-2, validate_every=20, seed=0)
    result = train_classifier(model, train_set, val_set, config, tmp_path)
    assert result.metric == "auc" and result.best_score == 1.0
    best, payload = load_model(tmp_path / "best.pt")
    assert payload["task"] == "lesion-class" and payload["val_auc"] == 1.0
    assert score(best, val_set) == ("auc", 1.0)


def test_lesion_sets_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match="labels"):
        LesionSet(np.zeros((2, 1, 4, 4, 4), np.float32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="index"):
        LesionSet(np.zeros((1, 1, 4, 4, 4), np.float32), np.array([2]))


def test_fedseg_train_lesion_class_on_phantoms(tmp_path: Path) -> None:
    data = tmp_path / "phantoms"
    config = PhantomConfig(
        sites=2, cases_per_site=2, seed=4, size=Size.TINY, modalities=(PhantomModality.MR,)
    )
    generate_dataset(data, config)
    run = tmp_path / "run"
    args = ["train", "--task", "lesion-class", "--data", str(data), "--out", str(run)]
    args += ["--steps", "2", "--validate-every", "2", "--val-fraction", "0.25", "--no-progress"]
    assert main(args) == 0
    split = json.loads((run / "split.json").read_text())[str(data)]
    assert len(split["train"]) == 3 and len(split["val"]) == 1
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 2 and result["metric"] == "accuracy"  # one validation lesion
    _, payload = load_model(run / "best.pt")
    assert payload["task"] == "lesion-class"
