"""Lesion-wise detection: which true lesions were found and how many false alarms.

Lesions are 26-connected components. A true lesion counts as detected when any predicted voxel
overlaps it; a predicted component that touches no true lesion is a false positive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_FULL = ndimage.generate_binary_structure(3, 3)


@dataclass(frozen=True)
class DetectionResult:
    """Lesion counts of one case."""

    true_lesions: int
    detected: int
    false_positives: int

    def __post_init__(self) -> None:
        if min(self.true_lesions, self.detected, self.false_positives) < 0:
            raise ValueError("lesion counts cannot be negative")
        if self.detected > self.true_lesions:
            raise ValueError("cannot detect more lesions than there are")


def detect_lesions(pred: np.ndarray, truth: np.ndarray) -> DetectionResult:
    """Count true lesions, detected lesions and false-positive components of one case."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    structure = _FULL if pred.ndim == 3 else ndimage.generate_binary_structure(pred.ndim, pred.ndim)
    truth_labels, n_truth = ndimage.label(truth, structure=structure)
    pred_labels, n_pred = ndimage.label(pred, structure=structure)
    detected = len(np.unique(truth_labels[pred & truth]))
    hit = np.unique(pred_labels[pred & truth])
    return DetectionResult(
        true_lesions=int(n_truth), detected=int(detected), false_positives=int(n_pred - len(hit))
    )


def detection_summary(results: Sequence[DetectionResult]) -> dict[str, float]:
    """Pooled lesion sensitivity and mean false positives per case.

    Sensitivity is 1.0 when no case holds a lesion (nothing was missed).
    """
    if not results:
        raise ValueError("at least one case is required")
    lesions = sum(r.true_lesions for r in results)
    detected = sum(r.detected for r in results)
    return {
        "cases": float(len(results)),
        "lesions": float(lesions),
        "sensitivity": detected / lesions if lesions else 1.0,
        "false_positives_per_case": sum(r.false_positives for r in results) / len(results),
    }
