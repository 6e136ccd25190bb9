"""Stack geometry: slice steps, gantry tilt, uneven spacing, missing slices and the affine.

Voxel convention used throughout fedseg: ``array[i, j, k]`` where ``i`` runs along a row
(the column index, DICOM row cosine), ``j`` down the columns (the row index, DICOM column
cosine) and ``k`` along the stack. The 4×4 affine maps ``(i, j, k, 1)`` to patient LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.dicom.stacks import Stack

_TILT_TOLERANCE_DEG = 0.05  # below this, in-plane drift of slices is rounding noise
_PATIENT_AXES = ("L", "P", "S")
_OPPOSITE = {"L": "R", "P": "A", "S": "I"}


@dataclass(frozen=True)
class StackGeometry:
    """Measured geometry of one ordered stack."""

    row_cosine: np.ndarray
    column_cosine: np.ndarray
    normal: np.ndarray
    column_spacing: float  # mm between columns (along a row): PixelSpacing[1]
    row_spacing: float  # mm between rows: PixelSpacing[0]
    positions: np.ndarray  # (n, 3) ImagePositionPatient per ordered plane
    default_step: float  # slice step for a single-plane stack, mm

    @property
    def distances(self) -> np.ndarray:
        """Plane positions along the normal, mm."""
        return self.positions @ self.normal

    @property
    def normal_steps(self) -> np.ndarray:
        """Distance between consecutive planes along the normal, mm."""
        return np.diff(self.distances)

    @property
    def median_step(self) -> float:
        """Typical slice step along the normal, mm."""
        steps = self.normal_steps
        return float(np.median(steps)) if steps.size else self.default_step

    @property
    def tilt_degrees(self) -> float:
        """Largest angle between a slice step and the slice normal (gantry tilt)."""
        if len(self.positions) < 2:
            return 0.0
        steps = np.diff(self.positions, axis=0)
        along = steps @ self.normal
        across = np.linalg.norm(steps - np.outer(along, self.normal), axis=1)
        return float(np.degrees(np.max(np.arctan2(across, np.abs(along)))))

    @property
    def is_tilted(self) -> bool:
        """Whether the stack is sheared (gantry tilt)."""
        return self.tilt_degrees > _TILT_TOLERANCE_DEG

    def grid_deviation(self) -> float:
        """Largest distance of a plane from the regular grid through the end planes, mm."""
        d = self.distances
        if d.size < 3:
            return 0.0
        grid = d[0] + np.arange(d.size) * (d[-1] - d[0]) / (d.size - 1)
        return float(np.max(np.abs(d - grid)))

    def missing_slice_gaps(self) -> np.ndarray:
        """Indices of steps that look like missing slices (n×median in a regular stack)."""
        steps = self.normal_steps
        if steps.size < 2:
            return np.array([], dtype=int)
        ratios = steps / self.median_step
        gaps = np.flatnonzero(ratios > 1.5)
        others = np.delete(ratios, gaps)
        whole = np.abs(ratios[gaps] - np.round(ratios[gaps])) < 0.1
        if gaps.size and bool(np.all(whole)) and bool(np.all(np.abs(others - 1.0) < 0.1)):
            return gaps
        return np.array([], dtype=int)

    def affine(self) -> np.ndarray:
        """Voxel→LPS affine of the stack as it is (sheared if tilted, mean step if uneven)."""
        a = np.eye(4)
        a[:3, 0] = self.row_cosine * self.column_spacing
        a[:3, 1] = self.column_cosine * self.row_spacing
        n = len(self.positions)
        if n > 1:
            a[:3, 2] = (self.positions[-1] - self.positions[0]) / (n - 1)
        else:
            a[:3, 2] = self.normal * self.default_step
        a[:3, 3] = self.positions[0]
        return a


def measure(stack: Stack) -> StackGeometry:
    """Measure the geometry of an ordered stack."""
    first = stack.planes[0]
    row = first.orientation[:3] / np.linalg.norm(first.orientation[:3])
    col = first.orientation[3:] / np.linalg.norm(first.orientation[3:])
    ds = first.dataset
    step = ds.get("SpacingBetweenSlices") or first.slice_thickness or 1.0
    return StackGeometry(
        row_cosine=row,
        column_cosine=col,
        normal=first.normal,
        column_spacing=first.pixel_spacing[1],
        row_spacing=first.pixel_spacing[0],
        positions=np.stack([p.position for p in stack.planes]),
        default_step=abs(float(step)),
    )


def regularise(
    planes: np.ndarray, geometry: StackGeometry, fill: float
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a tilted or unevenly spaced stack onto a regular orthogonal grid.

    Parameters
    ----------
    planes
        Pixel data ``(i, j, k)`` in stack order.
    geometry
        The stack's measured geometry.
    fill
        Value for target voxels that no source plane covers.

    Returns
    -------
    The regular array (linear interpolation) and its orthogonal affine. The grid keeps the
    in-plane axes and spacing, uses the median step along the normal, and is widened in-plane so
    every source pixel of a tilted stack stays inside.
    """
    dist = geometry.distances
    dz = geometry.median_step
    (*grid_shape, n_out), affine = regular_grid(geometry, planes.shape[0], planes.shape[1])
    out_shape = (grid_shape[0], grid_shape[1])
    off_i, off_j = _plane_offsets(geometry)
    lo_i, lo_j = int(np.floor(off_i.min() + 1e-6)), int(np.floor(off_j.min() + 1e-6))
    out = np.empty((*out_shape, n_out), dtype=np.float32)
    for t in range(n_out):
        d_t = dist[0] + t * dz
        b = int(np.clip(np.searchsorted(dist, d_t, side="right"), 1, len(dist) - 1))
        a = b - 1
        w = float(np.clip((d_t - dist[a]) / (dist[b] - dist[a]), 0.0, 1.0))
        acc = np.zeros(out_shape, dtype=np.float32)
        for src, weight in ((a, 1.0 - w), (b, w)):
            if weight == 0.0:
                continue
            offset = (lo_i - off_i[src], lo_j - off_j[src])
            acc += weight * ndimage.affine_transform(
                planes[:, :, src],
                np.eye(2),
                offset=offset,
                output_shape=out_shape,
                order=1,
                mode="constant",
                cval=fill,
            )
        out[:, :, t] = acc
    return out, affine


def _plane_offsets(geometry: StackGeometry) -> tuple[np.ndarray, np.ndarray]:
    """In-plane offset (in voxels) of each plane's origin from the first plane's origin."""
    rel = geometry.positions - geometry.positions[0]
    return rel @ geometry.row_cosine / geometry.column_spacing, (
        rel @ geometry.column_cosine / geometry.row_spacing
    )


def regular_grid(
    geometry: StackGeometry, columns: int, rows: int
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the grid :func:`regularise` resamples a stack onto (no pixels read).

    ``fedseg inspect`` reports this grid, so its row and its "resampled" warning agree.
    """
    dist = geometry.distances
    dz = geometry.median_step
    n_out = int(np.floor((dist[-1] - dist[0]) / dz + 1e-6)) + 1
    off_i, off_j = _plane_offsets(geometry)
    lo_i, lo_j = int(np.floor(off_i.min() + 1e-6)), int(np.floor(off_j.min() + 1e-6))
    hi_i = int(np.ceil(off_i.max() - 1e-6)) + columns
    hi_j = int(np.ceil(off_j.max() - 1e-6)) + rows
    affine = np.eye(4)
    affine[:3, 0] = geometry.row_cosine * geometry.column_spacing
    affine[:3, 1] = geometry.column_cosine * geometry.row_spacing
    affine[:3, 2] = geometry.normal * dz
    affine[:3, 3] = geometry.positions[0] + lo_i * affine[:3, 0] + lo_j * affine[:3, 1]
    return (hi_i - lo_i, hi_j - lo_j, n_out), affine


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Length of each voxel axis, mm."""
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    return (float(norms[0]), float(norms[1]), float(norms[2]))


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel of ``affine``, mL (|det| of its 3×3 part, mm³, / 1000)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def axis_codes(affine: np.ndarray) -> str:
    """Patient direction each voxel axis points to, as three letters (e.g. ``"LPS"``, ``"RAI"``)."""
    codes = []
    for axis in range(3):
        direction = affine[:3, axis]
        dominant = int(np.argmax(np.abs(direction)))
        letter = _PATIENT_AXES[dominant]
        codes.append(letter if direction[dominant] > 0 else _OPPOSITE[letter])
    return "".join(codes)
