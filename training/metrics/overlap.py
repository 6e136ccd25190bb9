"""Volume overlap: Dice and Jaccard of two binary masks.

Both are ratios of voxel counts, so they need no spacing. An empty prediction of an empty truth
scores 1 (nothing to find, nothing found); any voxel predicted where the truth is empty scores 0,
so a false positive on an absent organ is counted rather than becoming NaN.
"""

from __future__ import annotations

import numpy as np


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth).astype(bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    return pred, truth


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2|P∩T| / (|P|+|T|); 1.0 when both masks are empty."""
    pred, truth = _check(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index |P∩T| / |P∪T|; 1.0 when both masks are empty."""
    pred, truth = _check(pred, truth)
    union = int(np.logical_or(pred, truth).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(pred, truth).sum()) / union
