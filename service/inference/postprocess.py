"""From network output on the model grid to a clean label map on the source grid."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from service.dicom.geometry import voxel_volume_ml
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
    voxel_ml = voxel_volume_ml(affine)
    table = manifest.label_table()
    numbers = [entry.number for entry in table.labels]
    boxes = ndimage.find_objects(labels, max_label=max(numbers, default=0))
    for entry in table.labels:
        box = boxes[entry.number - 1] if 0 < entry.number <= len(boxes) else None
        if box is None:
            continue
        region = out[box]
        if entry.name in rules.largest_component or rules.min_component_ml > 0:
            largest_only = entry.name in rules.largest_component
            _drop_components(region, entry.number, largest_only, rules.min_component_ml, voxel_ml)
        mask = region == entry.number
        if rules.min_label_ml > 0 and mask.sum() * voxel_ml < rules.min_label_ml:
            region[mask] = 0
    return out


# Slices per chunk when counting and dropping components: bounds the temporaries to a few
# slices of the box instead of several full-box arrays (a label scattered over a whole CT has a
# box the size of the volume).
_CHUNK = 16


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` in the smallest integer type that holds their count."""
    try:
        components, count = ndimage.label(mask, output=np.uint16)
    except RuntimeError:  # more than 65535 components: scipy refuses the narrow type
        components, count = ndimage.label(mask, output=np.int32)
    return components, int(count)


def _drop_components(
    region: np.ndarray, number: int, largest_only: bool, minimum_ml: float, voxel_ml: float
) -> None:
    """Set to 0 the components of ``number`` in ``region`` that the rule does not keep."""
    components, count = _components(region == number)
    if count <= 1:
        return
    sizes = np.zeros(count + 1, dtype=np.int64)
    for start in range(0, components.shape[0], _CHUNK):
        chunk = components[start : start + _CHUNK]
        sizes += np.bincount(chunk.ravel(), minlength=count + 1)
    keep = np.zeros(count + 1, dtype=bool)
    keep[0] = True  # background of the mask: other labels, never touched here
    if largest_only:
        keep[1 + int(np.argmax(sizes[1:]))] = True
    else:
        keep[1:] = sizes[1:] * voxel_ml >= minimum_ml
    for start in range(0, components.shape[0], _CHUNK):
        part = region[start : start + _CHUNK]
        part[~keep[components[start : start + _CHUNK]]] = 0
