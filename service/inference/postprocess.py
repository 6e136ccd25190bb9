"""From network output on the model grid to a clean label map on the source grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from service.imaging.resample import resample
from service.inference.manifest import Manifest
from service.inference.preprocess import ModelGrid


def to_source_labels(logits: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Map ``(K, X, Y, Z)`` softmax logits on the model grid to labels on the source grid.

    Each class channel is resampled (linear) to the source grid on its own and folded into a
    running arg-max, so memory holds one source-size float32 channel at a time, never all K.
    """
    best_score: np.ndarray | None = None
    labels: np.ndarray | None = None
    inverse = grid.reorientation.inverse()
    for channel in range(logits.shape[0]):
        on_oriented = resample(logits[channel], grid.model, grid.oriented, order=1, fill=-1e4)
        score, _ = inverse.apply(on_oriented, grid.oriented.affine)
        if best_score is None or labels is None:
            best_score, labels = score, np.zeros(score.shape, dtype=np.uint8)
            continue
        better = score > best_score
        labels[better] = channel
        np.maximum(best_score, score, out=best_score)
    assert labels is not None
    return labels


def clean_labels(labels: np.ndarray, affine: np.ndarray, manifest: Manifest) -> np.ndarray:
    """Apply the manifest's component and size filters; absent organs end up empty."""
    rules = manifest.postprocessing
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    table = manifest.label_table()
    out = labels.copy()
    for entry in table.labels:
        mask = out == entry.number
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        if count > 1 and (entry.name in rules.largest_component or rules.min_component_ml > 0):
            sizes = np.bincount(components.ravel())[1:]
            keep = np.zeros(count + 1, dtype=bool)
            if entry.name in rules.largest_component:
                keep[1 + int(np.argmax(sizes))] = True
            else:
                keep[1:] = sizes * voxel_ml >= rules.min_component_ml
            out[mask & ~keep[components]] = 0
            mask = out == entry.number
        if mask.sum() * voxel_ml < rules.min_label_ml:
            out[mask] = 0
    return out
