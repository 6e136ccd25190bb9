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
and its order-3 resize of the input holds an edge-padded copy and a float64 coefficient copy of
the whole volume; on a 512×512×900 CT that is what exhausts memory.
:func:`resample_channel_chunks` yields one channel's values chunk by chunk along the first axis
instead (:func:`zoom_rows`: each chunk from the slab of input rows it needs, plus a halo of
:func:`spline_halo` rows for the spline prefilter), and the coordinate map of the across-slice
step is one index per slice (order_z 0 picks whole slices), so the caller holds one chunk per
channel at a time. Every chunk equals the same rows of nnU-Net's full result: bit for bit where
a slab spans the whole axis (2D planes, small volumes) or needs no prefilter (orders 0 and 1 on
float32), else to float64 rounding (≈ 1e-14 of the input's magnitude).

A caller that receives the input a few rows at a time (the logits, as the sliding window
finishes them) holds a :class:`RowWindow`; :class:`RowResampling` names the rows each chunk
reads and computes the chunk from a window of them, the same slab and so the same numbers.

scipy's ``zoom`` kernel is called directly (``scipy.ndimage._nd_image.zoom_shift``, what the
public ``zoom`` and ``affine_transform`` call) because the public functions take either a zoom
on grid coordinates or a shift, not both; scipy is pinned in ``constraints.txt`` and
``tests/service/inference/nnunet/test_resampling.py`` compares against nnU-Net's own code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage
from scipy.ndimage import _nd_image, _ni_support

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]
# Values from the stored ones, voxel by voxel and monotone non-decreasing (nnU-Net's CT
# normalisation): applied to each slab as it is read, so the caller keeps no normalised copy.
Transform = Callable[[np.ndarray], np.ndarray]

_NEAREST: int = _ni_support._extend_mode_to_code("nearest")


@dataclass(frozen=True)
class RowWindow:
    """Rows ``start`` to ``stop`` (axis 0) of a volume of ``shape``, the only ones in memory.

    What a caller streaming a volume along its first axis holds of it. Reading rows outside the
    window is an error rather than an edge: values computed without rows they need would be
    silently wrong.
    """

    values: np.ndarray
    start: int
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if tuple(self.values.shape[1:]) != tuple(self.shape[1:]) or not (
            0 <= self.start <= self.stop <= self.shape[0]
        ):
            raise ValueError(
                f"rows {self.start}…{self.stop} of shape {self.values.shape} are not a window of "
                f"a volume of shape {self.shape}"
            )

    @classmethod
    def whole(cls, array: np.ndarray) -> RowWindow:
        """The window of all of ``array``'s rows."""
        return cls(array, 0, tuple(array.shape))

    @property
    def stop(self) -> int:
        """One past the last row held."""
        return self.start + int(self.values.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The values' dtype."""
        return self.values.dtype

    def rows(self, low: int, high: int) -> np.ndarray:
        """Rows ``low`` to ``high`` of the volume (a view)."""
        if low < self.start or high > self.stop:
            raise ValueError(
                f"rows {low}…{high} are needed, the window holds {self.start}…{self.stop}"
            )
        return self.values[low - self.start : high - self.start]


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


def _pole(order: int) -> float:
    """The largest pole magnitude of scipy's order-``order`` B-spline prefilter (0: none)."""
    if order < 2:
        return 0.0
    poles = {
        2: np.sqrt(8.0) - 3.0,
        3: np.sqrt(3.0) - 2.0,
        4: np.sqrt(664.0 - np.sqrt(438976.0)) + np.sqrt(304.0) - 19.0,
        5: np.sqrt(67.5 - np.sqrt(4436.25)) + np.sqrt(26.25) - 6.5,
    }
    return float(abs(poles[order]))


def spline_halo(order: int) -> int:
    """Rows of real data a slab needs beyond the rows its interpolation reads (order 3: 27).

    The prefilter runs a causal and an anticausal recursion ``c[k] = s[k] + z c[k-1]`` per
    axis; started at a slab's inner border instead of the volume's, a coefficient ``d`` rows
    further in is off by at most about ``6 · 2/(1 - |z|)² · |z|^d · max|x|``. With ``d`` =
    ``log(1e-15) / log|z|`` (the tolerance scipy itself truncates its recursion start with) that
    is ≈ 1e-14 · max|x| for every order, float64 rounding, 7 decades below float32's.
    """
    pole = _pole(order)
    return 0 if pole == 0.0 else int(np.ceil(np.log(1e-15) / np.log(pole)))


def _edge_pad_into(target: np.ndarray, pads: Sequence[tuple[int, int]]) -> None:
    """Fill ``target``'s borders ``pads`` from its inner part, as ``np.pad(mode="edge")``."""
    for axis, (low, high) in enumerate(pads):
        index: list[slice] = [slice(None)] * target.ndim
        size = target.shape[axis]
        for pad, (fill, edge) in (
            (low, (slice(0, low), slice(low, low + 1))),
            (high, (slice(size - high, size), slice(size - high - 1, size - high))),
        ):
            if pad:
                index[axis] = edge
                source = target[tuple(index)]
                index[axis] = fill
                target[tuple(index)] = source


def _coefficients(
    image: RowWindow, rows: tuple[int, int], pad: int, order: int, transform: Transform | None
) -> np.ndarray:
    """Rows ``rows`` of ``image`` as scipy's zoom prepares the whole image, in float64.

    ``transform``ed (16 rows at a time), edge-padded by ``pad`` where the rows reach a true edge
    of ``image`` (and at every edge of the other axes), then prefiltered for ``order`` (> 1) in
    place.
    """
    low, high = rows
    ndim = len(image.shape)
    pads = [(pad if low == 0 else 0, pad if high == image.shape[0] else 0)]
    pads += [(pad, pad)] * (ndim - 1)
    slab = image.rows(low, high)
    inner = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, slab.shape, strict=True))
    coefficients = np.empty(
        [n + lo + hi for (lo, hi), n in zip(pads, slab.shape, strict=True)], dtype=np.float64
    )
    for first in range(0, slab.shape[0], 16):
        block = slab[first : first + 16]
        at = (slice(pads[0][0] + first, pads[0][0] + first + block.shape[0]), *inner[1:])
        coefficients[at] = block if transform is None else transform(block)
    _edge_pad_into(coefficients, pads)
    for axis in range(ndim if order > 1 else 0):
        ndimage.spline_filter1d(coefficients, order, axis, output=coefficients, mode="nearest")
    return coefficients


def _reads_slab(dtype: np.dtype, order: int, transform: Transform | None) -> bool:
    """Whether :func:`zoom_rows` copies a slab (float64) instead of reading the input in place."""
    return order > 1 or transform is not None or dtype not in (np.float32, np.float64)


def slab_rows(
    size: int, new_size: int, order: int, rows: tuple[int, int], halo: int | None = None
) -> tuple[int, int]:
    """Input rows (axis 0) the slab of :func:`zoom_rows` for output ``rows`` holds.

    The interpolation's support (``order`` rows each side of the coordinates, one more after)
    and ``halo`` rows (default :func:`spline_halo`), within the input's ``size`` rows.
    """
    halo = spline_halo(order) if halo is None else halo
    ratio = np.divide(size, new_size)  # scipy's zoom: input / output size
    start, stop = rows
    first = (start + 0.5) * ratio - 0.5
    last = (stop - 1 + 0.5) * ratio - 0.5
    low = max(int(np.floor(first)) - order - halo, 0)
    high = min(int(np.floor(last)) + order + 2 + halo, size)
    return low, high


def zoom_rows(
    image: np.ndarray | RowWindow,
    shape: Sequence[int],
    order: int,
    rows: tuple[int, int],
    halo: int | None = None,
    transform: Transform | None = None,
) -> np.ndarray:
    """Rows ``rows`` (axis 0) of scipy's ``zoom`` of ``image`` to ``shape``, from a slab.

    The zoom is ``scipy.ndimage.zoom(image, order=order, mode="nearest", grid_mode=True)``
    in float64, of ``transform(image)`` where a transform is given (applied slab by slab).

    Orders 0 and 1 interpolate float32/float64 input where it lies (all of it: a
    :class:`RowWindow` must then hold every row). Other input (float16 logits) and higher orders
    take scipy's steps on a slab (:func:`slab_rows`, which is all a window needs to hold): edge
    padding by 12 where the slab reaches a true edge of ``image`` (every edge of the other
    axes), ``halo`` real rows (default :func:`spline_halo`) at its inner borders, the B-spline
    prefilter in float64, the interpolation at output row ``o``'s coordinate
    ``(o + 0.5) · in/out − 0.5``. The result is scipy's, bit for bit, when the slab is the whole
    image (small images, 2D planes) or no prefilter is needed, else to float64 rounding; memory
    is one float64 slab. A window gives the same numbers as the whole array: the same slab.
    """
    window = image if isinstance(image, RowWindow) else RowWindow.whole(image)
    start, stop = rows
    if tuple(window.shape) == tuple(int(s) for s in shape):
        rows_in = window.rows(start, stop)
        rows_in = rows_in if transform is None else transform(rows_in)
        return np.array(rows_in, dtype=np.float64)  # scipy's zoom returns the input
    ratios = np.divide(window.shape, shape)  # scipy's zoom: input / output size per axis
    pad = 12 if order > 1 else 0  # scipy pads by 12 before prefiltering (mode "nearest")
    skip = 0  # padded rows of scipy's whole array before the slab's first row
    if _reads_slab(window.dtype, order, transform):
        low, high = slab_rows(window.shape[0], int(shape[0]), order, rows, halo)
        coefficients = _coefficients(window, (low, high), pad, order, transform)
        skip = low + pad if low > 0 else 0
    else:
        coefficients = window.rows(0, window.shape[0])  # orders 0 and 1 read the values
    out = np.empty((stop - start, *(int(s) for s in shape[1:])), dtype=np.float64)
    shifts = np.zeros(len(window.shape))
    # scipy.ndimage.zoom's own kernel (the public zoom takes no shift): output row o of the
    # slab sits at ((o + shift) + 0.5) · ratio − 0.5 + pad in its padded array. A slab from the
    # true first row has shift = start, scipy's coordinates bit for bit; a later one starts
    # ``skip`` padded rows in, which the shift takes off (float64 rounding).
    shifts[0] = start - skip / ratios[0] if skip else start
    _nd_image.zoom_shift(coefficients, ratios, shifts, out, order, _NEAREST, 0.0, pad, True)
    return out


def resize(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """scikit-image ``resize(image, shape, order, mode="edge", anti_aliasing=False)``, float64.

    That is ``scipy.ndimage.zoom(mode="nearest", grid_mode=True)`` (:func:`zoom_rows`, all
    rows in one slab), clipped to the input's range.
    """
    image = np.asarray(image)
    out = zoom_rows(image, shape, order, (0, int(shape[0])))
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


def default_chunk(shape: Sequence[int], new_shape: Sequence[int], order: int) -> int:
    """Output rows per 3D chunk: at least 16, and for a prefiltered order enough rows.

    Enough means that a slab's useful input rows are four times its halo, so the halo costs at
    most a third of the prefilter's work.
    """
    halo = spline_halo(order)
    if halo == 0 or int(new_shape[0]) == 0:
        return 16
    rows_per_output = shape[0] / new_shape[0]
    return max(16, int(np.ceil(4 * halo / rows_per_output)))


def resample_channel_chunks(
    channel: np.ndarray,
    new_shape: Sequence[int],
    axis: int | None,
    order: int,
    order_z: int = 0,
    chunk: int | None = None,
    transform: Transform | None = None,
    dtype: type[np.floating] = np.float64,
) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """One channel resampled to ``new_shape``, as ``(index, values)`` chunks.

    With ``transform``, ``transform(channel)`` is resampled, read slab by slab. The values are
    computed in float64 and yielded as ``dtype``, rounded once as nnU-Net's assignment into its
    ``dtype_out`` array rounds them (so a caller of a float16 channel holds float16 chunks);
    each chunk is a new array the caller may change.

    Each chunk equals ``resample_data_or_seg(channel[None], new_shape, False, axis, order,
    axis is not None, order_z)[0][index]`` (to float64 rounding). Chunks run along the
    separate axis when there is one (whole planes, resized in-plane as nnU-Net does), else
    along axis 0, ``chunk`` rows at a time (:func:`default_chunk`), each computed from the
    slab of input rows it needs (:func:`zoom_rows`).
    """
    new = tuple(int(s) for s in new_shape)
    shape = channel.shape
    along = 0 if axis is None else axis
    step = default_chunk(shape, new, order) if chunk is None else chunk
    if step < 1:
        raise ValueError(f"chunk must be at least 1 row, got {step}")

    def index(start: int, stop: int) -> tuple[slice, ...]:
        return tuple(slice(start, stop) if a == along else slice(None) for a in range(3))

    def read(values: np.ndarray) -> np.ndarray:
        return values if transform is None else transform(values)

    def finish(
        values: np.ndarray, low: float | None = None, high: float | None = None
    ) -> np.ndarray:
        if low is not None:
            np.clip(values, low, high, out=values)  # scikit-image's clip=True
        return values if values.dtype == dtype else values.astype(dtype)

    if tuple(shape) == new:
        for start in range(0, new[along], step):
            rows = index(start, min(start + step, new[along]))
            yield rows, finish(np.array(read(channel[rows]), dtype=np.float64))
        return
    if axis is None:
        # scikit-image clips to the input's range; a monotone transform keeps the extremes.
        low, high = read(np.array([channel.min(), channel.max()], dtype=channel.dtype))
        for start in range(0, new[0], step):
            stop = min(start + step, new[0])
            values = zoom_rows(channel, new, order, (start, stop), transform=transform)
            values = finish(values, low, high)  # the float64 chunk is freed here if cast
            yield index(start, stop), values
        return
    if order_z != 0 and shape[axis] != new[axis]:
        raise ValueError(f"order_z {order_z} is not supported (nnU-Net's default is 0)")
    picks = _z_indices(shape[axis], new[axis]) if shape[axis] != new[axis] else np.arange(new[axis])
    plane = [s for a, s in enumerate(new) if a != axis]
    last: tuple[int, np.ndarray] | None = None
    for start in range(0, new[axis], step):
        stop = min(start + step, new[axis])
        planes = []
        for k in picks[start:stop]:
            if last is None or last[0] != int(k):
                values = read(np.take(channel, int(k), axis=axis))
                last = (int(k), finish(resize(values, plane, order)))
            planes.append(last[1])
        yield index(start, stop), np.stack(planes, axis=axis)


def row_streaming_obstacle(
    shape: Sequence[int], new_shape: Sequence[int], axis: int | None, order: int
) -> str | None:
    """Why a resampling cannot run on input streamed along axis 0 (None: it can).

    A separate axis other than 0 resizes planes that span all of axis 0; a 3D resize of order
    above 1 is clipped to the whole channel's range, known only at the end.
    """
    if tuple(shape) == tuple(new_shape):
        return None
    if axis not in (None, 0):
        return f"the separate axis is {axis}: its planes span all of axis 0"
    if axis is None and order > 1:
        return f"a 3D resize of order {order} is clipped to the whole channel's range"
    return None


@dataclass(frozen=True)
class RowResampling:
    """A float16 channel resampled chunk by chunk along axis 0 from input that arrives by rows.

    The chunks and the numbers of :func:`resample_channel_chunks` (``dtype=np.float16``, as
    nnU-Net's logits are resampled) for a caller that never holds the whole input: each chunk
    names the input rows it reads (:meth:`chunks`) and :meth:`values` computes it from a
    :class:`RowWindow` holding them, which is what makes it bit for bit the same (the same
    slab, the same coordinates). Where :func:`row_streaming_obstacle` objects, it is refused.

    One step is left out: the 3D resize's clip to the channel's range (scikit-image's
    ``clip=True``), which needs the whole channel. At orders 0 and 1 it cannot change a float16
    result: an interpolated value is a convex combination of its neighbours up to float64
    rounding (below 1e-9 for float16 inputs, whose magnitude is at most 65504), and float16
    rounding maps a value that close to a bound onto the bound (its smallest half step is 3e-8).
    """

    shape: Shape3
    new_shape: Shape3
    axis: int | None
    order: int
    order_z: int = 0
    chunk: int | None = None

    def __post_init__(self) -> None:
        obstacle = row_streaming_obstacle(self.shape, self.new_shape, self.axis, self.order)
        if obstacle is not None:
            raise ValueError(f"cannot resample {self.shape} → {self.new_shape} by rows: {obstacle}")
        if self.axis == 0 and self.order_z != 0 and self.shape[0] != self.new_shape[0]:
            raise ValueError(f"order_z {self.order_z} is not supported (nnU-Net's default is 0)")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"chunk must be at least 1 row, got {self.chunk}")

    @cached_property
    def _picks(self) -> np.ndarray:
        """The input slice of each output slice along the separate axis 0 (order_z 0)."""
        if self.shape[0] == self.new_shape[0]:
            return np.arange(self.new_shape[0])
        return _z_indices(self.shape[0], self.new_shape[0])

    def chunks(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """``(output rows, input rows it reads)`` of each chunk, in order."""
        size = self.new_shape[0]
        default = default_chunk(self.shape, self.new_shape, self.order)
        step = default if self.chunk is None else self.chunk
        chunks = []
        for start in range(0, size, step):
            rows = (start, min(start + step, size))
            chunks.append((rows, self._reads(rows)))
        return chunks

    def _reads(self, rows: tuple[int, int]) -> tuple[int, int]:
        start, stop = rows
        if self.shape == self.new_shape:
            return rows
        if self.axis is None:
            return slab_rows(self.shape[0], self.new_shape[0], self.order, rows)
        return int(self._picks[start]), int(self._picks[stop - 1]) + 1

    def values(self, window: RowWindow, rows: tuple[int, int]) -> np.ndarray:
        """Output ``rows`` (one of :meth:`chunks`) in float16, from a float16 ``window``."""
        if window.dtype != np.float16 or tuple(window.shape) != tuple(self.shape):
            raise ValueError(
                f"expected float16 rows of a {self.shape} volume, got {window.dtype} of "
                f"{window.shape}"
            )
        start, stop = rows
        if self.shape == self.new_shape:
            return np.array(window.rows(start, stop))
        if self.axis is None:
            return zoom_rows(window, self.new_shape, self.order, rows).astype(np.float16)
        picks = [int(k) for k in self._picks[start:stop]]
        planes: dict[int, np.ndarray] = {}  # output slices may share an input slice
        for k in picks:
            if k not in planes:
                resized = resize(window.rows(k, k + 1)[0], self.new_shape[1:], self.order)
                planes[k] = resized.astype(np.float16)
        return np.stack([planes[k] for k in picks])


def resample_channel(
    channel: np.ndarray,
    out: np.ndarray,
    axis: int | None,
    order: int,
    order_z: int = 0,
    chunk: int | None = None,
    transform: Transform | None = None,
) -> None:
    """Resample one channel (``transform``ed) onto ``out``'s shape, into ``out``, chunk by chunk."""
    for index, values in resample_channel_chunks(
        channel, out.shape, axis, order, order_z, chunk, transform
    ):
        out[index] = values


def resample(
    data: np.ndarray,
    new_shape: Sequence[int],
    axis: int | None,
    order: int,
    order_z: int = 0,
    chunk: int | None = None,
) -> np.ndarray:
    """``resample_data_or_seg(data, new_shape, False, axis, order, axis is not None, order_z)``.

    ``data`` is ``(C, X, Y, Z)``; the result keeps its dtype (nnU-Net's ``dtype_out``). It is
    computed ``chunk`` rows at a time (:func:`resample_channel_chunks`).
    """
    new = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == new:
        return data
    out = np.zeros((data.shape[0], *new), dtype=data.dtype)
    for c in range(data.shape[0]):
        resample_channel(data[c], out[c], axis, order, order_z, chunk)
    return out
