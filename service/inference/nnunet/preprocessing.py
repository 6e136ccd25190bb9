"""nnU-Net's preprocessing of one case, as ``DefaultPreprocessor.run_case_npy`` does it.

Order (nnU-Net 2.8.1): float32 copy → transpose_forward → crop to the non-zero bounding box
(``preprocessing/cropping``: any channel non-zero, holes filled) → per-channel normalisation
(``default_normalization_schemes.py``; ``use_mask_for_norm`` normalises inside the non-zero
mask only) → resampling to the configuration's spacing (order 3, separate-z rule).
:class:`CaseGeometry` keeps what export needs to undo it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.inference.nnunet.recipe import ChannelNormalisation, NnunetModel, NormalisationScheme
from service.inference.nnunet.resampling import (
    Shape3,
    Spacing3,
    compute_new_shape,
    resample,
    separate_z_axis,
)

BBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class CaseGeometry:
    """The shapes and box between the input array and the network grid (transposed order)."""

    spacing: Spacing3  # input spacing, transposed
    shape_before_cropping: Shape3
    bbox: BBox
    shape_after_cropping: Shape3
    shape_resampled: Shape3


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """nnU-Net's ``create_nonzero_mask``: any channel non-zero, holes filled (3D)."""
    mask = data[0] != 0
    for c in range(1, data.shape[0]):
        mask |= data[c] != 0
    filled: np.ndarray = ndimage.binary_fill_holes(mask)
    return filled


def bounding_box(mask: np.ndarray) -> BBox:
    """Half-open box of ``mask`` (acvl_utils ``get_bbox_from_mask``; whole axis if empty)."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        if present.size == 0:
            box.append((0, mask.shape[axis]))
        else:
            box.append((int(present[0]), int(present[-1]) + 1))
    return (box[0], box[1], box[2])


def _slicer(bbox: BBox) -> tuple[slice, slice, slice]:
    return (slice(*bbox[0]), slice(*bbox[1]), slice(*bbox[2]))


def crop_to_nonzero(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, BBox]:
    """``(C, X, Y, Z)`` data cropped to its non-zero box, the box's mask (True inside), the box."""
    mask = nonzero_mask(data)
    bbox = bounding_box(mask)
    slicer = _slicer(bbox)
    return data[(slice(None), *slicer)], mask[slicer], bbox


def normalise(image: np.ndarray, config: ChannelNormalisation, inside: np.ndarray) -> np.ndarray:
    """One channel normalised in place (float32), as nnU-Net's scheme class ``run`` does."""
    eps = 1e-8
    scheme = config.scheme
    if scheme is NormalisationScheme.CT:
        assert config.percentile_00_5 is not None and config.percentile_99_5 is not None
        assert config.mean is not None and config.std is not None
        np.clip(image, config.percentile_00_5, config.percentile_99_5, out=image)
        image -= config.mean
        image /= max(config.std, eps)
    elif scheme is NormalisationScheme.ZSCORE:
        if config.use_mask_for_norm:
            values = image[inside]
            mean, std = values.mean(), values.std()
            image[inside] = (values - mean) / max(std, eps)
        else:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, eps)
    elif scheme is NormalisationScheme.RESCALE_01:
        image -= image.min()
        image /= np.clip(image.max(), a_min=eps, a_max=None)
    return image


def preprocess(
    data: np.ndarray, spacing: Spacing3, model: NnunetModel
) -> tuple[np.ndarray, CaseGeometry]:
    """``(C, *array)`` input on its own grid → network input ``(C, X, Y, Z)`` float32.

    ``data`` and ``spacing`` follow nnU-Net's SimpleITK convention (array order); ``data`` is
    not modified.
    """
    forward = model.transpose_forward
    # A transposed view: the one float32 copy is the cropped one (normalised in place).
    view = np.asarray(data).transpose(0, *(a + 1 for a in forward))
    spacing_t = (spacing[forward[0]], spacing[forward[1]], spacing[forward[2]])
    before = (view.shape[1], view.shape[2], view.shape[3])
    if model.crop_to_nonzero:
        cropped_view, inside, bbox = crop_to_nonzero(view)
        data = np.array(cropped_view, dtype=np.float32)
        del cropped_view
    else:
        data = np.array(view, dtype=np.float32)
        inside = np.ones(before, dtype=bool)
        bbox = ((0, before[0]), (0, before[1]), (0, before[2]))
    cropped = (data.shape[1], data.shape[2], data.shape[3])
    new_shape = compute_new_shape(cropped, spacing_t, model.spacing)
    for c, config in enumerate(model.normalisation):
        normalise(data[c], config, inside)
    del inside
    rule = model.resampling_data
    axis = separate_z_axis(
        rule.force_separate_z, spacing_t, model.spacing, rule.separate_z_anisotropy_threshold
    )
    data = resample(data, new_shape, axis, rule.order, rule.order_z)
    geometry = CaseGeometry(
        spacing=spacing_t,
        shape_before_cropping=before,
        bbox=bbox,
        shape_after_cropping=cropped,
        shape_resampled=new_shape,
    )
    return data, geometry
