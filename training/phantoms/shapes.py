"""Smooth analytic solids in patient space, rasterised by voxel centre onto a grid.

Coordinates are produced as broadcastable arrays, so on an axis-aligned grid ``x`` depends on
one voxel axis only and evaluating a shape costs little more than the final comparison; that is
what keeps full-size (512×512×300) phantoms quick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.dicom.geometry import voxel_volume_ml
from service.imaging import resample


@dataclass(frozen=True)
class Grid(resample.Grid):
    """The service's voxel grid, checked on construction, with what the phantoms compute on it.

    ``shape`` is ``(i, j, k)`` and ``affine`` maps voxels to LPS mm, as in the service.
    """

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"grid shape must be three positive sizes, got {self.shape}")
        if np.asarray(self.affine).shape != (4, 4):
            raise ValueError("grid affine must be 4x4")

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel, mL."""
        return voxel_volume_ml(self.affine)

    def coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient ``(x, y, z)`` mm of every voxel centre as broadcastable float32 arrays."""
        axes = [
            np.arange(n, dtype=np.float32).reshape([-1 if d == a else 1 for d in range(3)])
            for a, n in enumerate(self.shape)
        ]
        out = []
        for row in range(3):
            value: np.ndarray = np.full((1, 1, 1), self.affine[row, 3], dtype=np.float32)
            for a in range(3):
                if abs(self.affine[row, a]) > 1e-9:
                    value = value + np.float32(self.affine[row, a]) * axes[a]
            out.append(value)
        return out[0], out[1], out[2]


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid with semi-axes along rotated patient axes (rotation columns)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

    def __post_init__(self) -> None:
        if min(self.radii) <= 0:
            raise ValueError(f"ellipsoid radii must be positive, got {self.radii}")

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside."""
        d = (x - self.centre[0], y - self.centre[1], z - self.centre[2])
        r = np.asarray(self.rotation, dtype=np.float64)
        total: np.ndarray | float = 0.0
        for axis in range(3):
            # Scalar coefficients and skipped zero terms keep an axis-aligned ellipsoid
            # separable, so only the final sum is evaluated on the full grid.
            terms = [d[n] * float(r[n, axis] / self.radii[axis]) for n in range(3) if r[n, axis]]
            u = sum(terms[1:], terms[0])
            total = total + u * u
        return np.asarray(total <= 1.0)

    @property
    def volume_ml(self) -> float:
        """Analytic volume, mL."""
        return float(4.0 / 3.0 * np.pi * np.prod(self.radii)) / 1000.0


@dataclass(frozen=True)
class SuperellipticCylinder:
    """A cylinder along patient z with a superelliptic cross-section (body outlines, bones)."""

    centre: tuple[float, float]
    radii: tuple[float, float]
    z_range: tuple[float, float]
    exponent: float = 2.0

    def __post_init__(self) -> None:
        if min(self.radii) <= 0 or self.exponent <= 0 or self.z_range[0] >= self.z_range[1]:
            raise ValueError("superelliptic cylinder needs positive radii, exponent and z extent")

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Boolean mask of points inside."""
        e = self.exponent
        section = (np.abs((x - self.centre[0]) / self.radii[0]) ** e) + (
            np.abs((y - self.centre[1]) / self.radii[1]) ** e
        )
        return np.asarray((section <= 1.0) & (z >= self.z_range[0]) & (z <= self.z_range[1]))


def rotation_about(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    """Rotation matrix about ``axis`` by ``degrees`` (right-handed)."""
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.asarray(np.eye(3) * c + s * cross + (1 - c) * np.outer(u, u))


Solid = Ellipsoid | SuperellipticCylinder


def rasterise(solid: Solid, grid: Grid) -> np.ndarray:
    """Boolean mask of the grid voxels whose centres lie inside ``solid``."""
    x, y, z = grid.coordinates()
    return np.broadcast_to(solid.inside(x, y, z), grid.shape).copy()
