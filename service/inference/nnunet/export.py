"""From nnU-Net logits on the network grid to labels on the input grid (``export_prediction.py``).

nnU-Net 2.8.1's ``convert_predicted_logits_to_segmentation_with_correct_shape``: resample the
float16 logits to the cropped input shape (order 1, separate-z rule with the configuration's
spacing as the current one), argmax (softmax models) or ``regions_class_order`` over
``sigmoid > 0.5`` (region models), insert into the uncropped shape, transpose back; then
``postprocessing.json``'s rules (``remove_connected_components.py``).

Memory: nnU-Net resamples every class onto the input grid at once (classes × voxels, float16,
plus float64 temporaries). Here the classes are streamed chunk by chunk
(:func:`~service.inference.nnunet.resampling.resample_channel_chunks`): a running float16
maximum and the label chunk are all that is kept, which gives the same labels (first maximum
wins, as ``argmax``) with one chunk per class in memory; chunks are written into the uncropped
label map directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from service.inference.nnunet.preprocessing import CaseGeometry
from service.inference.nnunet.recipe import NnunetModel, PostprocessingStep
from service.inference.nnunet.resampling import resample_channel_chunks, separate_z_axis


def _sigmoid(values: np.ndarray) -> np.ndarray:
    x = values.astype(np.float32)
    out: np.ndarray = np.float32(1) / (np.float32(1) + np.exp(-x))
    return out


def logits_to_labels(logits: np.ndarray, geometry: CaseGeometry, model: NnunetModel) -> np.ndarray:
    """``(K, *network grid)`` float16 logits → nnU-Net labels on the input array's grid.

    The result is in the input's own axis order (transpose_backward applied), uint8 or uint16.
    """
    rule = model.resampling_logits
    axis = separate_z_axis(
        rule.force_separate_z, model.spacing, geometry.spacing, rule.separate_z_anisotropy_threshold
    )
    largest = max(model.regions_class_order or model.output_values)
    dtype = np.uint8 if largest < 255 else np.uint16
    full = np.zeros(geometry.shape_before_cropping, dtype=dtype)
    cropped = full[tuple(slice(a, b) for a, b in geometry.bbox)]  # chunks go straight in
    streams = [
        resample_channel_chunks(
            logits[k],
            geometry.shape_after_cropping,
            axis,
            rule.order,
            rule.order_z,
            dtype=np.float16,  # nnU-Net's float16 logits on the input grid, one chunk each
        )
        for k in range(logits.shape[0])
    ]
    for chunks in zip(*streams, strict=True):
        index = chunks[0][0]
        if model.regions_class_order is not None:
            out = np.zeros(chunks[0][1].shape, dtype=dtype)
            for (_, values), value in zip(chunks, model.regions_class_order, strict=True):
                out[_sigmoid(values) > 0.5] = value
        else:
            best = chunks[0][1]  # the stream's own array, updated in place
            out = np.zeros(best.shape, dtype=dtype)
            for k, (_, current) in enumerate(chunks[1:], start=1):
                better = current > best
                out[better] = k
                np.maximum(best, current, out=best)
        cropped[index] = out
    return full.transpose(model.transpose_backward)


def _mask(labels: np.ndarray, target: int | tuple[int, ...]) -> np.ndarray:
    """nnU-Net's ``region_or_label_to_mask``."""
    if isinstance(target, tuple):
        return np.isin(labels, np.asarray(target))
    return labels == target


def keep_largest_component(
    labels: np.ndarray, targets: Sequence[int | tuple[int, ...]]
) -> np.ndarray:
    """``remove_all_but_largest_component_from_segmentation`` (in place; returns ``labels``).

    Components are 26-connected (scikit-image's default full connectivity); every component of
    the largest size is kept, as nnU-Net keeps ties. The work is done inside the masks'
    bounding box.
    """
    mask = np.zeros(labels.shape, dtype=bool)
    for target in targets:
        mask |= _mask(labels, target)
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    if not boxes or boxes[0] is None:
        return labels
    box = boxes[0]
    region = mask[box]
    components, count = ndimage.label(region, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return labels
    sizes = np.bincount(components.ravel())[1:]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes == sizes.max()
    drop = region & ~keep[components]
    labels[box][drop] = 0
    return labels


def apply_postprocessing(labels: np.ndarray, steps: Sequence[PostprocessingStep]) -> np.ndarray:
    """``postprocessing.json``'s rules in order (nnU-Net's ``apply_postprocessing``), in place."""
    for step in steps:
        keep_largest_component(labels, step.labels_or_regions)
    return labels
