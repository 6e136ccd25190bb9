"""nnU-Net's preprocessing of one case, as ``DefaultPreprocessor.run_case_npy`` does it.

Order (nnU-Net 2.8.1): float32 copy → transpose_forward → crop to the non-zero bounding box
(``preprocessing/cropping``: any channel non-zero, holes filled) → per-channel normalisation
(``default_normalization_schemes.py``; ``use_mask_for_norm`` normalises inside the non-zero
mask only) → resampling to the configuration's spacing (order 3, separate-z rule).
:class:`CaseGeometry` keeps what export needs to undo it.

Memory: nnU-Net holds the float32 copy, the cropped copy and the resampling's padded and float64
copies of the whole volume. Here the caller's array is only viewed (transposed, cropped); the
box is found a few rows at a time (:func:`nonzero_bbox`), the filled mask is made only for a
masked z-score, and voxel-wise schemes (CT, none) normalise each slab as the resampling reads it
(:func:`~service.inference.nnunet.resampling.resample_channel`), so no normalised copy of the
volume exists; z-score and rescaling, which need the whole channel's statistics, copy one
channel at a time. The numbers are nnU-Net's: the normalisation is the same float32 arithmetic
voxel by voxel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import ndimage

from service.inference.nnunet.recipe import ChannelNormalisation, NnunetModel, NormalisationScheme
from service.inference.nnunet.resampling import (
    Shape3,
    Spacing3,
    Transform,
    compute_new_shape,
    resample_channel,
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


def nonzero_bbox(data: np.ndarray, rows: int = 16) -> BBox:
    """Half-open box of the voxels where any channel is non-zero (whole axes if there are none).

    nnU-Net takes the box of the non-zero mask after filling its holes (acvl_utils
    ``get_bbox_from_mask``); a filled hole is enclosed by the mask, so inside its box, and the
    box is the same. ``data`` (``(C, X, Y, Z)``) is read ``rows`` rows at a time.
    """
    sizes = data.shape[1:]
    present = [np.zeros(n, dtype=bool) for n in sizes]
    for start in range(0, sizes[0], rows):
        mask = (data[:, start : start + rows] != 0).any(axis=0)
        present[0][start : start + rows] = mask.any(axis=(1, 2))
        present[1] |= mask.any(axis=(0, 2))
        present[2] |= mask.any(axis=(0, 1))
    if not present[0].any():
        return ((0, sizes[0]), (0, sizes[1]), (0, sizes[2]))
    box = [(int(np.flatnonzero(p)[0]), int(np.flatnonzero(p)[-1]) + 1) for p in present]
    return (box[0], box[1], box[2])


def _slicer(bbox: BBox) -> tuple[slice, slice, slice]:
    return (slice(*bbox[0]), slice(*bbox[1]), slice(*bbox[2]))


def crop_to_nonzero(
    data: np.ndarray, with_mask: bool = True
) -> tuple[np.ndarray, np.ndarray | None, BBox]:
    """``(C, X, Y, Z)`` data cropped to its non-zero box: the view, the mask, the box.

    The view is ``data``'s; the box's filled non-zero mask (True inside) only ``with_mask``. It
    is filled inside the box: a hole of the whole volume's mask is a hole of the box's
    and the other way round (background touching the box's border touches the volume's), so it
    equals nnU-Net's mask cropped.
    """
    bbox = nonzero_bbox(data)
    cropped = data[(slice(None), *_slicer(bbox))]
    return cropped, nonzero_mask(cropped) if with_mask else None, bbox


def normalise(
    image: np.ndarray, config: ChannelNormalisation, inside: np.ndarray | None = None
) -> np.ndarray:
    """One channel normalised in place (float32), as nnU-Net's scheme class ``run`` does.

    ``inside`` (the non-zero mask) is needed by a z-score with ``use_mask_for_norm`` only.
    """
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
            if inside is None:
                raise ValueError("a z-score with use_mask_for_norm needs the non-zero mask")
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


def _normalised_copy(values: np.ndarray, config: ChannelNormalisation) -> np.ndarray:
    return normalise(np.array(values, dtype=np.float32), config)


def _channel(
    channel: np.ndarray,
    view: tuple[tuple[int, int, int], BBox],
    config: ChannelNormalisation,
    inside: np.ndarray | None,
) -> tuple[np.ndarray, Transform | None]:
    """One channel cropped for the resampling, and the normalisation it still needs.

    ``channel`` is in the input's (SimpleITK) axis order; ``view`` the transpose and the box.
    Voxel-wise schemes: the view and its normalisation (applied slab by slab). Others need the
    whole channel's statistics: a float32 copy normalised in place, laid out as nnU-Net's (C
    order, then transposed and cropped), so that numpy's float32 mean and std sum in the same
    order and give the same numbers.
    """
    axes, box = view
    if config.scheme in (NormalisationScheme.CT, NormalisationScheme.NONE):
        return channel.transpose(axes)[_slicer(box)], partial(_normalised_copy, config=config)
    copy = np.array(channel, dtype=np.float32, order="C").transpose(axes)[_slicer(box)]
    return normalise(copy, config, inside), None


def preprocess(
    data: np.ndarray, spacing: Spacing3, model: NnunetModel
) -> tuple[np.ndarray, CaseGeometry]:
    """``(C, *array)`` input on its own grid → network input ``(C, X, Y, Z)`` float32.

    ``data`` and ``spacing`` follow nnU-Net's SimpleITK convention (array order); ``data`` is
    not modified, and not copied (see the module's memory notes).
    """
    data = np.asarray(data)
    forward = model.transpose_forward
    view = data.transpose(0, *(a + 1 for a in forward))
    spacing_t = (spacing[forward[0]], spacing[forward[1]], spacing[forward[2]])
    before = (view.shape[1], view.shape[2], view.shape[3])
    masked = any(
        c.scheme is NormalisationScheme.ZSCORE and c.use_mask_for_norm for c in model.normalisation
    )
    inside: np.ndarray | None
    if model.crop_to_nonzero:
        view, inside, bbox = crop_to_nonzero(view, masked)
    else:
        inside = np.ones(before, dtype=bool) if masked else None
        bbox = ((0, before[0]), (0, before[1]), (0, before[2]))
    cropped = (view.shape[1], view.shape[2], view.shape[3])
    new_shape = compute_new_shape(cropped, spacing_t, model.spacing)
    rule = model.resampling_data
    axis = separate_z_axis(
        rule.force_separate_z, spacing_t, model.spacing, rule.separate_z_anisotropy_threshold
    )
    image = np.empty((view.shape[0], *new_shape), dtype=np.float32)
    del view
    for c, config in enumerate(model.normalisation):
        channel, transform = _channel(data[c], (forward, bbox), config, inside)
        resample_channel(channel, image[c], axis, rule.order, rule.order_z, transform=transform)
        del channel
    geometry = CaseGeometry(
        spacing=spacing_t,
        shape_before_cropping=before,
        bbox=bbox,
        shape_after_cropping=cropped,
        shape_resampled=new_shape,
    )
    return image, geometry
