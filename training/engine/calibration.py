"""Decision rule of a two-class head: probability threshold calibrated on validation cases.

A network trained on patches that over-represent the foreground (and with a soft Dice term)
is not calibrated: its arg-max (probability > 0.5) over-segments. For a single-label head,
"foreground probability > t" is the same rule as arg-max after adding ``logit(t)`` to the
background logit, because ``p1 > t`` ⇔ ``l1 − l0 > log(t / (1 − t))``. The service blends
window logits linearly and resamples each channel linearly, so folding ``logit(t)`` into the
bias of the head's last convolution (:func:`fold_threshold`) makes the exported model apply
the calibrated threshold exactly, with no change to the service.

Everything here scores on the **source** grid, the way the service returns labels: logits are
computed on the model grid, each channel is resampled (linear) to the oriented source grid and
reoriented back (:func:`service.inference.postprocess.to_source_labels` does the same).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from scipy import ndimage

from service.imaging.resample import resample
from service.inference.preprocess import to_model_grid
from training.data.preprocess import normalise
from training.metrics import dice
from training.models import MultiTaskUNet
from training.tasks import Task

#: Thresholds tried by :func:`calibrate_threshold` (foreground probability).
DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))
_FILL = -1e4


@torch.no_grad()
def foreground_margin(
    model: MultiTaskUNet, task: Task, image: np.ndarray, affine: np.ndarray
) -> np.ndarray:
    """``logit(foreground) − logit(background)`` of a raw image, on the image's own grid.

    Equivalent to the service's inference path: LPS reorientation, resampling to the task's
    spacing, normalisation, Gaussian-blended sliding windows (MONAI's default blending is
    uniform; the service's is Gaussian), linear resampling of the logits back to the source
    grid.
    """
    if task.num_classes != 2:
        raise ValueError(f"task {task.name.value} has {task.num_classes} classes; need 2")
    values, grid = to_model_grid(np.asarray(image, np.float32), affine, task.spacing)
    x = torch.from_numpy(normalise(values, task))[None, None]
    was_training = model.training
    model.eval()
    # Gaussian blending with the service's sigma (service.inference.sliding_window), so the
    # margins calibrated here are the ones the exported bundle produces.
    logits = sliding_window_inference(
        x,
        roi_size=task.patch_size,
        sw_batch_size=2,
        predictor=lambda t: model(t, task.name.value),
        overlap=0.5,
        mode="gaussian",
        sigma_scale=0.125,
    )
    model.train(was_training)
    assert isinstance(logits, torch.Tensor)
    margin = (logits[0, 1] - logits[0, 0]).numpy().astype(np.float32)
    oriented = resample(margin, grid.model, grid.oriented, order=1, fill=_FILL)
    source, _ = grid.reorientation.inverse().apply(oriented, grid.oriented.affine)
    return np.asarray(source, dtype=np.float32)


def logit(threshold: float) -> float:
    """``log(t / (1 − t))``; the margin a probability threshold corresponds to."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    return math.log(threshold / (1.0 - threshold))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (the service's ``largest_component``)."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(components.ravel())[1:]
    return np.asarray(components == 1 + int(np.argmax(sizes)))


def decide(margin: np.ndarray, threshold: float, keep_largest: bool) -> np.ndarray:
    """Foreground where the probability exceeds ``threshold``; optionally the largest component."""
    mask = margin > logit(threshold)
    return largest_component(mask) if keep_largest else mask


@dataclass(frozen=True)
class Calibration:
    """The chosen rule and the validation scores of every rule tried."""

    threshold: float
    keep_largest: bool
    #: (threshold, keep_largest) → (mean validation Dice, median predicted/true volume ratio)
    scores: dict[tuple[float, bool], tuple[float, float]]

    @property
    def val_dice(self) -> float:
        """Mean validation Dice of the chosen rule."""
        return self.scores[(self.threshold, self.keep_largest)][0]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "threshold": self.threshold,
            "keep_largest": self.keep_largest,
            "val_dice": self.val_dice,
            "scores": [
                {"threshold": t, "keep_largest": k, "val_dice": d, "median_volume_ratio": r}
                for (t, k), (d, r) in self.scores.items()
            ],
        }


def calibrate_threshold(
    margins: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    keep_largest: Sequence[bool] = (False, True),
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> Calibration:
    """The rule (threshold, largest component or not) with the best mean validation Dice.

    Ties go to the lower threshold, then to keeping every component. ``margins`` come from
    :func:`foreground_margin` on validation cases (never test cases), ``truths`` are their
    reference masks on the same grids.
    """
    if not margins or len(margins) != len(truths):
        raise ValueError("need one truth per margin and at least one validation case")
    scores: dict[tuple[float, bool], tuple[float, float]] = {}
    for keep in keep_largest:
        for t in thresholds:
            dices, ratios = [], []
            for margin, truth in zip(margins, truths, strict=True):
                pred = decide(margin, t, keep)
                dices.append(dice(pred, truth > 0))
                ratios.append(pred.sum() / max(int((truth > 0).sum()), 1))
            scores[(float(t), bool(keep))] = (float(np.mean(dices)), float(np.median(ratios)))
    best = max(scores, key=lambda rule: (scores[rule][0], -rule[0], not rule[1]))
    return Calibration(threshold=best[0], keep_largest=best[1], scores=scores)


def fold_threshold(model: MultiTaskUNet, head: str, threshold: float) -> MultiTaskUNet:
    """A copy of ``model`` whose arg-max over ``head`` equals "foreground prob > threshold".

    Adds ``logit(threshold)`` to the background bias of the head's final 1×1×1 convolution.
    """
    folded = copy.deepcopy(model)
    out = folded.heads[head].out
    if not isinstance(out, torch.nn.Module):
        raise ValueError(f"head {head!r} has no output block")
    convs = [m for m in out.modules() if isinstance(m, torch.nn.Conv3d)]
    if len(convs) != 1 or convs[0].bias is None or convs[0].out_channels != 2:
        raise ValueError(f"head {head!r} has no single two-channel output convolution with bias")
    with torch.no_grad():
        convs[0].bias[0] += logit(threshold)
    return folded
