"""SUVpeak: the highest mean SUV in a 1 cm³ sphere, with partial-volume voxel weights.

The sphere (radius 6.2035 mm) rarely fits a voxel grid, so each voxel is weighted by the
fraction of its volume inside the sphere, estimated by supersampling the voxel on a regular
sub-grid. Two peaks are reported (IBSI 2 "local" and "global" intensity peak):

* local: the sphere is centred on the hottest voxel of the region (ties: the highest mean);
* global: the sphere centre may be any voxel of the region; the highest mean wins.

In both the sphere may reach voxels outside the region (the peak describes the image around
the lesion, as in PERCIST), but not outside the image: weights are renormalised over the voxels
that exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.dicom.geometry import voxel_spacing

#: Radius of a 1 cm³ sphere, mm.
PEAK_RADIUS_MM = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)


def sphere_weights(
    spacing: tuple[float, float, float], radius_mm: float = PEAK_RADIUS_MM, supersampling: int = 15
) -> np.ndarray:
    """Fraction of each voxel inside a sphere centred on the middle voxel.

    Parameters
    ----------
    spacing
        Voxel size along i, j, k, mm.
    radius_mm
        Sphere radius.
    supersampling
        Sub-samples per voxel and axis; the volume error falls as ``1/supersampling``.

    Returns
    -------
    numpy.ndarray
        Odd-sized kernel of weights in [0, 1], symmetric about its centre.
    """
    if radius_mm <= 0 or supersampling < 1 or any(s <= 0 for s in spacing):
        raise ValueError("radius, spacing and supersampling must be positive")
    step = np.asarray(spacing, dtype=np.float64)
    half = np.ceil(radius_mm / step + 0.5).astype(int)
    # Sub-sample offsets within one voxel, centred: (-0.5, 0.5) in voxel units.
    sub = (np.arange(supersampling) + 0.5) / supersampling - 0.5
    axes = [
        (np.arange(-h, h + 1)[:, None] + sub[None, :]).ravel() * s
        for h, s in zip(half, step, strict=True)
    ]
    sq = [a**2 for a in axes]
    inside = (sq[0][:, None, None] + sq[1][None, :, None] + sq[2][None, None, :]) <= radius_mm**2
    shape = tuple(int(2 * h + 1) for h in half)
    counts = inside.reshape(
        shape[0], supersampling, shape[1], supersampling, shape[2], supersampling
    )
    weights = counts.mean(axis=(1, 3, 5))
    return np.asarray(weights, dtype=np.float64)


@dataclass(frozen=True)
class PeakResult:
    """Local and global SUVpeak of one region, with the sphere centres (voxel indices)."""

    local: float
    local_centre: tuple[int, int, int]
    global_: float
    global_centre: tuple[int, int, int]


def _box(mask: np.ndarray, pad: tuple[int, int, int]) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(
        slice(max(int(i.min()) - p, 0), min(int(i.max()) + p + 1, n))
        for i, p, n in zip(idx, pad, mask.shape, strict=True)
    )


def sphere_means(
    values: np.ndarray, mask: np.ndarray, kernel: np.ndarray
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Weighted sphere mean around every voxel of the bounding box of ``mask``.

    Returns the means on the crop and the crop's slices into the full array.
    """
    pad = tuple(int(n // 2) for n in kernel.shape)
    inner = _box(mask, (0, 0, 0))
    outer = _box(mask, pad)  # type: ignore[arg-type]
    crop = values[outer].astype(np.float64)
    sums = ndimage.correlate(crop, kernel, mode="constant", cval=0.0)
    rel = tuple(
        slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True)
    )
    if all(i.start - o.start >= p for i, o, p in zip(inner, outer, pad, strict=True)) and all(
        o.stop - i.stop >= p for i, o, p in zip(inner, outer, pad, strict=True)
    ):
        return sums[rel] / kernel.sum(), inner
    # Image edges: only voxels that exist count, so renormalise by the weights that were used.
    norms = ndimage.correlate(np.ones_like(crop), kernel, mode="constant", cval=0.0)
    means = sums / norms
    return means[rel], inner


def suv_peak(
    values: np.ndarray, mask: np.ndarray, affine: np.ndarray, kernel: np.ndarray | None = None
) -> PeakResult:
    """Local (IBSI, on the hottest voxel) and global (best centre in the region) SUVpeak.

    Raises
    ------
    ValueError
        If the mask is empty or its shape differs from ``values``.
    """
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {values.shape}")
    if not mask.any():
        raise ValueError("SUVpeak of an empty region")
    if kernel is None:
        kernel = sphere_weights(voxel_spacing(affine))
    means, box = sphere_means(values, mask, kernel)
    region = mask[box]
    vals = values[box]
    hottest = np.max(vals[region])
    ties = region & (vals == hottest)
    local_index = np.unravel_index(np.argmax(np.where(ties, means, -np.inf)), means.shape)
    global_index = np.unravel_index(np.argmax(np.where(region, means, -np.inf)), means.shape)

    def absolute(index: tuple[np.intp, ...]) -> tuple[int, int, int]:
        i, j, k = (int(x) + s.start for x, s in zip(index, box, strict=True))
        return (i, j, k)

    return PeakResult(
        local=float(means[local_index]),
        local_centre=absolute(local_index),
        global_=float(means[global_index]),
        global_centre=absolute(global_index),
    )
