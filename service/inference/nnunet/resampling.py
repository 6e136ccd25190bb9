"""nnU-Net's default resampling (``preprocessing/resampling/default_resampling.py``) in numpy/scipy.

The same numbers as nnU-Net 2.8.1, step for step:

- the separate-z rule (:func:`separate_z_axis`): an anisotropic spacing (max/min above the
  threshold, first the current spacing, then the target) is resampled in-plane slice by slice
  with ``order`` and across slices with ``order_z`` (nearest by default);
- in-plane and 3D resizing is scikit-image's ``resize(mode="edge", anti_aliasing=False)``
  (:func:`resize`): ``scipy.ndimage.zoom`` with ``grid_mode=True`` in float64, clipped to the
  input's range;
- the output takes the input's dtype (float32 data, float16 logits as nnU-Net's predictor keeps
  them).

Memory: nnU-Net resamples all logits channels at once onto the source grid (channels × voxels,
plus float64 temporaries and a float64 coordinate map of 3 × voxels in the separate-z case),
which is what exhausts memory on a 512×512×900 CT. :func:`resample_channel_chunks` yields one
channel's values chunk by chunk along the first axis instead, and the coordinate map of the
across-slice step is one index per slice (order_z 0 picks whole slices), so the caller holds one
chunk per channel at a time; every chunk equals the same rows of nnU-Net's full result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]


def compute_new_shape(
    shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
) -> Shape3:
    """nnU-Net's ``compute_new_shape``: ``round(old_spacing / new_spacing * shape)`` per axis."""
    out = [
        round(float(s) / float(n) * int(k))
        for s, n, k in zip(spacing, new_spacing, shape, strict=True)
    ]
    return (out[0], out[1], out[2])


def _lowres_axes(spacing: Sequence[float]) -> list[int]:
    values = np.asarray(spacing, dtype=np.float64)
    return [int(a) for a in np.where(max(spacing) / values == 1)[0]]


def _anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    return bool((np.max(spacing) / np.min(spacing)) > threshold)


def separate_z_axis(
    force_separate_z: bool | None,
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    threshold: float = 3.0,
) -> int | None:
    """The axis resampled separately (nnU-Net's ``determine_do_sep_z_and_axis``), or None."""
    axes: list[int] | None
    if force_separate_z is not None:
        axes = _lowres_axes(current_spacing) if force_separate_z else None
    elif _anisotropic(current_spacing, threshold):
        axes = _lowres_axes(current_spacing)
    elif _anisotropic(new_spacing, threshold):
        axes = _lowres_axes(new_spacing)
    else:
        axes = None
    if axes is None or len(axes) != 1:
        return None  # 2 or 3 equal lowest-resolution axes: nnU-Net resamples in 3D
    return axes[0]


def resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """scikit-image ``resize(image, shape, order, mode="edge", anti_aliasing=False)``, float64."""
    # nnU-Net converts to float64 first; scipy's spline prefilter computes in float64 from
    # float32 input just the same (the conversion is exact), so float32 is passed as is: one
    # float64 copy of the channel (the prefilter's) instead of two.
    image = np.asarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    factors = np.divide(image.shape, shape)
    zoom = [1 / f for f in factors]
    out = ndimage.zoom(image, zoom, output=np.float64, order=order, mode="nearest", grid_mode=True)
    np.clip(out, image.min(), image.max(), out=out)  # scikit-image's clip=True
    return out


def _z_indices(size: int, new_size: int) -> np.ndarray:
    """Source slice of each output slice for order_z 0: nnU-Net's map_coordinates, one axis."""
    scale = float(size) / new_size
    coordinates = scale * (np.arange(new_size) + 0.5) - 0.5
    picked = ndimage.map_coordinates(
        np.arange(size, dtype=np.float64), coordinates[None], order=0, mode="nearest"
    )
    return picked.astype(np.intp)


def _linear_rows(image: np.ndarray, shape: Sequence[int], rows: tuple[int, int]) -> np.ndarray:
    """Rows ``rows`` of :func:`resize` with order 1 (3D), computed from the rows they need."""
    zoom = np.divide(image.shape, shape)
    start, stop = rows
    first = (start + 0.5) * zoom[0] - 0.5
    last = (stop - 1 + 0.5) * zoom[0] - 0.5
    low = max(int(np.floor(first)) - 1, 0)
    high = min(int(np.ceil(last)) + 2, image.shape[0])
    slab = np.asarray(image[low:high], dtype=np.float64)
    offset = [first - low, 0.5 * zoom[1] - 0.5, 0.5 * zoom[2] - 0.5]
    out = ndimage.affine_transform(
        slab,
        zoom,
        offset=offset,
        output_shape=(stop - start, int(shape[1]), int(shape[2])),
        order=1,
        mode="nearest",
    )
    return out


def resample_channel_chunks(
    channel: np.ndarray,
    new_shape: Sequence[int],
    axis: int | None,
    order: int,
    order_z: int = 0,
    chunk: int = 16,
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """One channel resampled to ``new_shape``, as ``(index, values)`` chunks (float64).

    Each chunk equals ``resample_data_or_seg(channel[None], new_shape, False, axis, order,
    axis is not None, order_z)[0][index]``. Chunks run along the separate axis when there is
    one (whole planes, resized in-plane as nnU-Net does), else along axis 0: order 1 is then
    computed per chunk from the input rows it needs; other orders resize the whole channel once
    (their spline prefilter is global).
    """
    new = tuple(int(s) for s in new_shape)
    shape = channel.shape
    along = 0 if axis is None else axis

    def index(start: int, stop: int) -> tuple[slice, ...]:
        return tuple(slice(start, stop) if a == along else slice(None) for a in range(3))

    if tuple(shape) == new:
        for start in range(0, new[0], chunk):
            rows = index(start, min(start + chunk, new[0]))
            yield rows, np.asarray(channel[rows], dtype=np.float64)
        return
    if axis is None:
        whole = None if order == 1 else resize(channel, new, order)
        low, high = (float(channel.min()), float(channel.max())) if whole is None else (0.0, 0.0)
        for start in range(0, new[0], chunk):
            stop = min(start + chunk, new[0])
            if whole is not None:
                yield index(start, stop), whole[start:stop]
            else:
                values = _linear_rows(channel, new, (start, stop))
                yield index(start, stop), np.clip(values, low, high, out=values)
        return
    if order_z != 0 and shape[axis] != new[axis]:
        raise ValueError(f"order_z {order_z} is not supported (nnU-Net's default is 0)")
    picks = _z_indices(shape[axis], new[axis]) if shape[axis] != new[axis] else np.arange(new[axis])
    plane = [s for a, s in enumerate(new) if a != axis]
    last: tuple[int, np.ndarray] | None = None
    for start in range(0, new[axis], chunk):
        stop = min(start + chunk, new[axis])
        planes = []
        for k in picks[start:stop]:
            if last is None or last[0] != int(k):
                last = (int(k), resize(np.take(channel, int(k), axis=axis), plane, order))
            planes.append(last[1])
        yield index(start, stop), np.stack(planes, axis=axis)


def resample(
    data: np.ndarray,
    new_shape: Sequence[int],
    axis: int | None,
    order: int,
    order_z: int = 0,
) -> np.ndarray:
    """``resample_data_or_seg(data, new_shape, False, axis, order, axis is not None, order_z)``.

    ``data`` is ``(C, X, Y, Z)``; the result keeps its dtype (nnU-Net's ``dtype_out``).
    """
    new = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new:
        return data
    out = np.zeros((data.shape[0], *new), dtype=data.dtype)
    for c in range(data.shape[0]):
        for index, values in resample_channel_chunks(data[c], new, axis, order, order_z):
            out[c][index] = values
    return out
