"""From network output on the model grid to a clean label map on the source grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from service.imaging.resample import resample_argmax
from service.inference.manifest import Manifest
from service.inference.preprocess import ModelGrid


def to_source_labels(logits: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Map ``(K, X, Y, Z)`` softmax logits on the model grid to labels on the source grid.

    Every class channel is resampled linearly onto the (reoriented) source grid and the label
    is the first channel with the highest value, 0 outside the model grid's field of view
    (:func:`service.imaging.resample.resample_argmax`, which never holds a source-size array
    per class), written straight into the source's own axes through a reoriented view.
    """
    labels = np.empty(grid.source.shape, dtype=np.uint8)
    resample_argmax(logits, grid.model, grid.oriented, out=oriented_view(labels, grid))
    return labels


def oriented_view(array: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """``array`` on the source grid seen in the model's orientation: a view, not a copy."""
    view = np.transpose(array, grid.reorientation.permutation)
    flipped = tuple(axis for axis, flip in enumerate(grid.reorientation.flips) if flip)
    return np.flip(view, axis=flipped) if flipped else view


def clean_labels(labels: np.ndarray, affine: np.ndarray, manifest: Manifest) -> np.ndarray:
    """Apply the manifest's component and size filters; absent organs end up empty.

    Each label is filtered inside its own bounding box, so the cost follows the size of the
    structures, not of the volume. Returns a new array; ``labels`` is left unchanged.
    """
    rules = manifest.postprocessing
    out = labels.copy()
    if not (rules.largest_component or rules.min_component_ml > 0 or rules.min_label_ml > 0):
        return out
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    table = manifest.label_table()
    numbers = [entry.number for entry in table.labels]
    boxes = ndimage.find_objects(labels, max_label=max(numbers, default=0))
    for entry in table.labels:
        box = boxes[entry.number - 1] if 0 < entry.number <= len(boxes) else None
        if box is None:
            continue
        region = out[box]
        mask = region == entry.number
        if entry.name in rules.largest_component or rules.min_component_ml > 0:
            components, count = ndimage.label(mask)
            if count > 1:
                sizes = np.bincount(components.ravel())[1:]
                keep = np.zeros(count + 1, dtype=bool)
                if entry.name in rules.largest_component:
                    keep[1 + int(np.argmax(sizes))] = True
                else:
                    keep[1:] = sizes * voxel_ml >= rules.min_component_ml
                region[mask & ~keep[components]] = 0
                mask = region == entry.number
        if rules.min_label_ml > 0 and mask.sum() * voxel_ml < rules.min_label_ml:
            region[mask] = 0
    return out
