"""Per-label segmentation scores: overlap, surface distances and what was empty."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from training.metrics.overlap import dice, jaccard
from training.metrics.surface import surface_distances


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one label in one case.

    ``false_positive_mm3`` is the predicted volume outside the truth; for an organ absent from
    the truth it is the whole prediction, reported alongside a Dice of 0.
    """

    dice: float
    jaccard: float
    hd95_mm: float
    msd_mm: float
    truth_empty: bool
    pred_empty: bool
    false_positive_mm3: float
    false_negative_mm3: float
    #: False when exactly one mask is empty, so the distances are the worst-case image diagonal.
    distances_defined: bool

    def as_dict(self) -> dict[str, float | bool]:
        """Plain mapping for JSON reports."""
        return asdict(self)


def score_label(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
) -> SegmentationScores:
    """Score one binary prediction against its binary truth on a grid of ``spacing`` mm."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    distances = surface_distances(pred, truth, spacing)
    voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=float)))
    return SegmentationScores(
        dice=dice(pred, truth),
        jaccard=jaccard(pred, truth),
        hd95_mm=distances.hd95,
        msd_mm=distances.mean,
        truth_empty=not bool(truth.any()),
        pred_empty=not bool(pred.any()),
        false_positive_mm3=float(np.count_nonzero(pred & ~truth)) * voxel_mm3,
        false_negative_mm3=float(np.count_nonzero(truth & ~pred)) * voxel_mm3,
        distances_defined=distances.defined,
    )


def score_labels(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    labels: Mapping[int, str],
) -> dict[str, SegmentationScores]:
    """Score every label of two integer label maps; keys are the label names."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    return {
        name: score_label(pred == value, truth == value, spacing)
        for value, name in sorted(labels.items())
    }
