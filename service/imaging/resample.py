"""Resampling between voxel grids defined by shape and affine.

Grids are resampled in patient space, so any two grids of the same patient can be mapped
(model spacing ↔ source grid, PET ↔ CT). Labels use nearest neighbour; images use linear or
cubic interpolation. New grids from :func:`grid_for_spacing` keep the field of view's outer
voxel edges, so upsampling by an integer factor and back reproduces labels exactly.

Grids whose axes are parallel (every grid made by :func:`grid_for_spacing` and the grid it came
from) map voxel axis to voxel axis, so linear interpolation is separable: :func:`axis_sampling`
computes each axis's source indices and weights once, and :func:`resample_argmax` uses them to
take the arg-max of many linearly resampled class channels slice by slice, without ever holding
a target-size array per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.dicom.geometry import voxel_spacing

# Off-diagonal terms of a voxel-to-voxel mapping below this count as zero (axis-aligned grids).
_ALIGNED_TOLERANCE = 1e-9
# Target samples nudged by this (voxels) before nearest-neighbour rounding, on every axis alike.
_NUDGE = 1e-6


@dataclass(frozen=True)
class Grid:
    """A voxel grid in patient space."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each axis, mm."""
        return voxel_spacing(self.affine)


@dataclass(frozen=True)
class AxisSampling:
    """Where the voxels of one target axis fall on the matching source axis.

    Target voxel ``t`` takes ``(1 - weight[t]) * source[lower[t]] + weight[t] * source[upper[t]]``
    (linear interpolation with edge extension, as :func:`resample` does), and lies in the source's
    field of view when ``inside[t]``.
    """

    lower: np.ndarray  # intp
    upper: np.ndarray  # intp; equal to `lower` at the source's last voxel
    weight: np.ndarray  # float32 in [0, 1], the weight of `upper`
    inside: np.ndarray  # bool

    @classmethod
    def build(cls, scale: float, offset: float, source_size: int, target_size: int) -> AxisSampling:
        """Sampling of target voxel ``t`` at source coordinate ``offset + scale * t``."""
        coordinate = offset + np.arange(target_size, dtype=np.float64) * scale
        clamped = np.clip(coordinate, 0.0, source_size - 1)
        lower = np.floor(clamped).astype(np.intp)
        upper = np.minimum(lower + 1, source_size - 1)
        weight = (clamped - lower).astype(np.float32)
        # The same rule as the 3-D nearest-neighbour test in `resample`, one axis at a time.
        inside = ndimage.affine_transform(
            np.ones(source_size, dtype=np.uint8),
            np.array([[scale]]),
            offset=offset + _NUDGE,
            output_shape=(target_size,),
            order=0,
            mode="grid-constant",
            cval=0,
        ).astype(bool)
        return cls(lower=lower, upper=upper, weight=weight, inside=inside)


def grid_for_spacing(grid: Grid, spacing: tuple[float, float, float]) -> Grid:
    """A grid covering the same field of view as ``grid`` with voxels of ``spacing`` mm.

    Raises
    ------
    ValueError
        If a spacing is not positive.
    """
    if any(s <= 0 for s in spacing):
        raise ValueError(f"target spacing must be positive, got {spacing}")
    old = np.asarray(grid.spacing)
    new = np.asarray(spacing, dtype=np.float64)
    extent = np.asarray(grid.shape) * old
    shape = np.maximum(np.round(extent / new).astype(int), 1)
    directions = grid.affine[:3, :3] / old
    affine = np.eye(4)
    affine[:3, :3] = directions * new
    # Keep the outer edge of voxel 0 fixed: centre moves by half the change in voxel size.
    affine[:3, 3] = grid.affine[:3, 3] + directions @ ((new - old) / 2)
    return Grid(shape=(int(shape[0]), int(shape[1]), int(shape[2])), affine=affine)


def voxel_mapping(source: Grid, target: Grid) -> np.ndarray:
    """The 4×4 matrix taking target voxel indices to source voxel indices."""
    mapping: np.ndarray = np.linalg.solve(source.affine, target.affine)
    return mapping


def axis_sampling(
    source: Grid, target: Grid
) -> tuple[AxisSampling, AxisSampling, AxisSampling] | None:
    """Per-axis linear sampling when target axis n runs along source axis n, else ``None``."""
    mapping = voxel_mapping(source, target)
    matrix = mapping[:3, :3]
    off_diagonal = matrix - np.diag(np.diag(matrix))
    if np.abs(off_diagonal).max() > _ALIGNED_TOLERANCE or np.any(np.diag(matrix) == 0):
        return None
    axes = [
        AxisSampling.build(
            float(matrix[a, a]), float(mapping[a, 3]), source.shape[a], target.shape[a]
        )
        for a in range(3)
    ]
    return axes[0], axes[1], axes[2]


def inside_mask(source: Grid, target: Grid) -> np.ndarray:
    """Target voxels that lie within the source's outer voxel edges (bool, ``target.shape``)."""
    sampling = axis_sampling(source, target)
    if sampling is not None:
        a, b, c = (s.inside for s in sampling)
        return a[:, None, None] & b[None, :, None] & c[None, None, :]
    mapping = voxel_mapping(source, target)
    inside = ndimage.affine_transform(
        np.ones(source.shape, dtype=np.uint8),
        mapping[:3, :3],
        offset=mapping[:3, 3] + _NUDGE,
        output_shape=target.shape,
        order=0,
        mode="grid-constant",
        cval=0,
    )
    return inside.astype(bool)


def resample(
    array: np.ndarray,
    source: Grid,
    target: Grid,
    order: int = 1,
    fill: float = 0.0,
    inside: np.ndarray | None = None,
) -> np.ndarray:
    """Resample ``array`` from ``source`` onto ``target``.

    Parameters
    ----------
    array
        Values on the source grid; shape must equal ``source.shape``.
    source, target
        The grid ``array`` lies on, and the grid to sample onto.
    order
        0 for labels (nearest), 1 linear, 3 cubic.
    fill
        Value where the target lies outside the source.
    inside
        :func:`inside_mask` of the two grids, when the caller resamples several arrays between
        the same grids (computed here otherwise).
    """
    if tuple(array.shape[:3]) != tuple(source.shape):
        raise ValueError(f"array shape {array.shape} does not match grid shape {source.shape}")
    # target voxel -> patient -> source voxel
    mapping = voxel_mapping(source, target)
    if np.allclose(mapping, np.eye(4), atol=1e-9) and target.shape == source.shape:
        return array.copy()
    matrix, offset = mapping[:3, :3], mapping[:3, 3]
    if order == 0:
        # Nudge exact half-way samples to one side so the rounding is the same on every axis.
        offset = offset + _NUDGE
    # A source voxel covers ±half a voxel around its centre: samples there take its value
    # ("grid-constant" for nearest; edge extension for interpolation), samples beyond get `fill`.
    out = ndimage.affine_transform(
        array,
        matrix,
        offset=offset,
        output_shape=target.shape,
        order=order,
        mode="grid-constant" if order == 0 else "nearest",
        cval=fill,
        prefilter=order > 1,
    )
    if order > 0:
        if inside is None:
            inside = inside_mask(source, target)
        elif inside.shape != tuple(target.shape):
            raise ValueError(f"inside mask shape {inside.shape} is not the target's {target.shape}")
        out[~inside] = fill
    return out


def resample_argmax(
    scores: np.ndarray, source: Grid, target: Grid, out: np.ndarray | None = None
) -> np.ndarray:
    """Index of the highest of ``K`` linearly resampled score channels on ``target`` (uint8).

    The result is what resampling every channel of ``scores`` (``(K, *source.shape)``) with
    :func:`resample` (``order=1``) and taking the first maximum gives, with 0 where the target
    lies outside the source. Axis-aligned grids take the separable path (float32 arithmetic, so
    a voxel whose two best channels differ by float32 rounding only may pick the other one);
    other grids resample one channel at a time.

    Memory beyond the uint8 result: two source slices of all channels resampled in-plane for
    axis-aligned grids; one float32 target-size channel and its running maximum otherwise.

    Parameters
    ----------
    scores
        ``(K, *source.shape)`` class scores.
    source, target
        The grid ``scores`` lie on, and the grid to label.
    out
        Optional uint8 array of ``target.shape`` to write into; it may be a strided view (e.g.
        a transposed or flipped view of a label map in another orientation).

    Raises
    ------
    ValueError
        If ``scores`` is not ``(K, *source.shape)`` with 1 ≤ K ≤ 256, or ``out`` is not a uint8
        array of ``target.shape``.
    """
    if scores.ndim != 4 or tuple(scores.shape[1:]) != tuple(source.shape):
        raise ValueError(
            f"scores of shape {scores.shape} must be (classes, *{tuple(source.shape)})"
        )
    if not 1 <= scores.shape[0] <= 256:
        raise ValueError(f"{scores.shape[0]} classes do not fit a uint8 label map (1 to 256)")
    if out is None:
        out = np.empty(target.shape, dtype=np.uint8)
    elif out.dtype != np.uint8 or tuple(out.shape) != tuple(target.shape):
        raise ValueError(
            f"out must be a uint8 array of shape {tuple(target.shape)}, "
            f"got {out.dtype} {tuple(out.shape)}"
        )
    sampling = axis_sampling(source, target)
    if sampling is None:
        out[...] = _argmax_per_channel(scores, source, target)
    else:
        _SeparableArgmax(scores, sampling).run(out)
    return out


def first_argmax(stack: np.ndarray) -> np.ndarray:
    """``np.argmax(stack, axis=0)`` as uint8, channel by channel (ties go to the lower index)."""
    labels = np.zeros(stack.shape[1:], dtype=np.uint8)
    best = stack[0].copy()
    for channel in range(1, stack.shape[0]):
        better = stack[channel] > best
        labels[better] = channel
        np.maximum(best, stack[channel], out=best)
    return labels


def _argmax_per_channel(scores: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """General grids: resample channel by channel into a running maximum."""
    inside = inside_mask(source, target)
    labels = np.zeros(target.shape, dtype=np.uint8)
    best: np.ndarray | None = None
    for channel in range(scores.shape[0]):
        score = resample(scores[channel], source, target, order=1, inside=inside)
        if best is None:
            best = score
            continue
        better = score > best
        labels[better] = channel
        np.maximum(best, score, out=best)
    labels[~inside] = 0
    return labels


def _interpolate(array: np.ndarray, sampling: AxisSampling, axis: int) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` (float32)."""
    shape = [1] * array.ndim
    shape[axis] = -1
    weight = sampling.weight.reshape(shape)
    lower = np.take(array, sampling.lower, axis=axis)
    upper = np.take(array, sampling.upper, axis=axis)
    lower *= np.float32(1.0) - weight
    upper *= weight
    lower += upper
    return lower


class _SeparableArgmax:
    """Arg-max of separably resampled channels, one target slice (axis 0) at a time.

    Each source slice is resampled along axes 1 and 2 once (all channels) and kept while target
    slices still need it. A target voxel between two source slices whose arg-max agree takes that
    label without arithmetic: a convex combination keeps the first maximum where both ends have
    it, so only voxels where the two slices disagree are interpolated across slices.
    """

    def __init__(self, scores: np.ndarray, sampling: tuple[AxisSampling, ...]) -> None:
        self.scores = scores
        self.sampling = sampling
        self._planes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _plane(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Source slice ``index`` of all channels on the target's axes 1 and 2, and its arg-max."""
        if index not in self._planes:
            plane = np.asarray(self.scores[:, index], dtype=np.float32)
            plane = _interpolate(plane, self.sampling[2], axis=2)
            plane = _interpolate(plane, self.sampling[1], axis=1)
            if len(self._planes) >= 2:
                del self._planes[next(iter(self._planes))]
            self._planes[index] = (plane.reshape(plane.shape[0], -1), first_argmax(plane))
        return self._planes[index]

    def run(self, out: np.ndarray) -> None:
        """Fill ``out`` (uint8, target shape, possibly a strided view) slice by slice."""
        rows, cols, depth = self.sampling
        out[~rows.inside] = 0
        for t in np.flatnonzero(rows.inside):
            low, high, weight = int(rows.lower[t]), int(rows.upper[t]), rows.weight[t]
            values_low, labels_low = self._plane(low)
            if weight == 0 or low == high:
                out[t] = labels_low
                continue
            values_high, labels_high = self._plane(high)
            differ = np.flatnonzero(labels_low != labels_high)
            if not differ.size:
                out[t] = labels_low
                continue
            row = labels_low.copy()
            mixed = values_low[:, differ]
            mixed *= np.float32(1.0) - weight
            mixed += values_high[:, differ] * weight
            row.reshape(-1)[differ] = first_argmax(mixed)
            out[t] = row
        out[:, ~cols.inside] = 0
        out[:, :, ~depth.inside] = 0


def resample_labels(labels: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label map (background 0 outside)."""
    return resample(labels, source, target, order=0, fill=0).astype(labels.dtype)
