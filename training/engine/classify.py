"""Training of the lesion classification head: benign vs malignant tumour cubes.

The phantoms' MR tumours are malignant (lobulated, textured, necrotic core) or benign (smooth,
homogeneous). A cube centred on the tumour, on the ``mr-tumour`` grid and z-scored as that task
says, goes through the shared encoder; the ``lesion-class`` head rates it. Validation scores the
held-out cubes (ROC AUC when both classes are there, else accuracy) and keeps the best model as
``best.pt``, like segmentation training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from training.engine.checkpoint import save_checkpoint
from training.engine.config import TrainConfig
from training.engine.step import StepSettings, train_step
from training.metrics.classification import roc_auc
from training.models import MultiTaskUNet
from training.models.unet import CLASSIFIER_NAME
from training.tasks import LESION_CLASSES

#: Edge of the cube around each tumour, in voxels of the ``mr-tumour`` grid (3 mm: 72 mm).
CUBE = 24


@dataclass(frozen=True)
class LesionSet:
    """Tumour cubes ``(n, 1, c, c, c)`` and their classes (index into ``LESION_CLASSES``)."""

    cubes: np.ndarray
    labels: np.ndarray
    case_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.cubes.ndim != 5 or self.cubes.shape[1] != 1:
            raise ValueError(f"cubes must be (n, 1, c, c, c), got {self.cubes.shape}")
        if self.labels.shape != (self.cubes.shape[0],):
            raise ValueError(f"{self.labels.shape[0]} labels for {self.cubes.shape[0]} cubes")
        if not np.isin(self.labels, range(len(LESION_CLASSES))).all():
            raise ValueError(f"labels must index {LESION_CLASSES}")

    @classmethod
    def stack(
        cls, cubes: Sequence[np.ndarray], labels: Sequence[int], ids: Sequence[str]
    ) -> LesionSet:
        """Build from per-lesion ``(c, c, c)`` cubes."""
        return cls(
            np.stack(cubes)[:, None].astype(np.float32),
            np.asarray(labels, dtype=np.int64),
            tuple(ids),
        )


def lesion_cube(image: np.ndarray, mask: np.ndarray, size: int = CUBE) -> np.ndarray:
    """The ``size``³ cube of ``image`` centred on the centroid of ``mask`` (padded with its min).

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    centre = np.rint(np.argwhere(mask).mean(0)).astype(int)
    padded = np.pad(image, size, mode="constant", constant_values=float(image.min()))
    start = centre + size - size // 2
    return padded[tuple(slice(int(s), int(s) + size) for s in start)]


@dataclass
class ClassifierResult:
    """What a classification run achieved: best validation score (AUC, or accuracy)."""

    best_score: float
    best_step: int
    steps: int
    seconds: float
    metric: str
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def malignant_probability(model: MultiTaskUNet, data: LesionSet) -> np.ndarray:
    """Probability of the malignant class for every cube."""
    was_training = model.training
    model.eval()
    logits = model.classify(torch.from_numpy(data.cubes))
    model.train(was_training)
    malignant = LESION_CLASSES.index("malignant")
    return torch.softmax(logits, dim=1)[:, malignant].numpy()


def score(model: MultiTaskUNet, data: LesionSet) -> tuple[str, float]:
    """``("auc", value)`` when both classes are present, else ``("accuracy", value)``."""
    probability = malignant_probability(model, data)
    malignant = (data.labels == LESION_CLASSES.index("malignant")).astype(int)
    if 0 < malignant.sum() < malignant.size:
        return "auc", roc_auc(malignant, probability)
    return "accuracy", float(np.mean((probability > 0.5) == malignant.astype(bool)))


def _augment(cubes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips of each spatial axis (the class does not depend on orientation)."""
    out = cubes.copy()
    for b in range(out.shape[0]):
        for axis in (1, 2, 3):
            if rng.uniform() < 0.5:
                out[b] = np.flip(out[b], axis=axis)
    return out


def _class_loss(model: MultiTaskUNet, cubes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the lesion-class head (every cube is labelled)."""
    return torch.nn.functional.cross_entropy(model.classify(cubes), labels)


def train_classifier(
    model: MultiTaskUNet,
    train_set: LesionSet,
    val_set: LesionSet,
    config: TrainConfig,
    out_dir: Path,
) -> ClassifierResult:
    """Cross-entropy training of the shared encoder and the ``lesion-class`` head."""
    if model.classifier is None:
        raise ValueError("the model has no classification head")
    if len(train_set.labels) == 0:
        raise ValueError("no training lesions")
    rng = np.random.default_rng(config.seed)
    params = list(model.encoder.parameters()) + list(model.classifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    step_settings = StepSettings(grad_clip=config.grad_clip)
    result = ClassifierResult(-1.0, 0, 0, 0.0, "")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    validation = val_set if len(val_set.labels) else train_set
    while result.steps < config.steps:
        pick = rng.integers(len(train_set.labels), size=config.batch_size)
        cubes = torch.from_numpy(_augment(train_set.cubes[pick], rng))
        labels = torch.from_numpy(train_set.labels[pick])
        loss = train_step(optimizer, partial(_class_loss, model, cubes, labels), step_settings)
        result.steps += 1
        if result.steps % config.validate_every == 0 or result.steps == config.steps:
            metric, value = score(model, validation)
            result.metric = metric
            result.history.append({"step": float(result.steps), "loss": loss, metric: value})
            if value > result.best_score:
                result.best_score, result.best_step = value, result.steps
                save_checkpoint(
                    out_dir / "best.pt", model, task=CLASSIFIER_NAME, **{f"val_{metric}": value}
                )
    result.seconds = time.perf_counter() - started
    save_checkpoint(out_dir / "last.pt", model, task=CLASSIFIER_NAME, result=result.__dict__)
    (out_dir / "result.json").write_text(json.dumps(result.__dict__, indent=2))
    return result
