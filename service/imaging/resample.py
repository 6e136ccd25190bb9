"""Resampling between voxel grids defined by shape and affine.

Grids are resampled in patient space, so any two grids of the same patient can be mapped
(model spacing ↔ source grid, PET ↔ CT). Labels use nearest neighbour; images use linear or
cubic interpolation. New grids from :func:`grid_for_spacing` keep the field of view's outer
voxel edges, so upsampling by an integer factor and back reproduces labels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.dicom.geometry import voxel_spacing


@dataclass(frozen=True)
class Grid:
    """A voxel grid in patient space."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along each axis, mm."""
        return voxel_spacing(self.affine)


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


def resample(
    array: np.ndarray,
    source: Grid,
    target: Grid,
    order: int = 1,
    fill: float = 0.0,
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
    """
    if tuple(array.shape[:3]) != tuple(source.shape):
        raise ValueError(f"array shape {array.shape} does not match grid shape {source.shape}")
    # target voxel -> patient -> source voxel
    mapping = np.linalg.solve(source.affine, target.affine)
    if np.allclose(mapping, np.eye(4), atol=1e-9) and target.shape == source.shape:
        return array.copy()
    matrix, offset = mapping[:3, :3], mapping[:3, 3]
    if order == 0:
        # Nudge exact half-way samples to one side so the rounding is the same on every axis.
        offset = offset + 1e-6
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
        inside = ndimage.affine_transform(
            np.ones(source.shape, dtype=np.uint8),
            matrix,
            offset=offset + 1e-6,
            output_shape=target.shape,
            order=0,
            mode="grid-constant",
            cval=0,
        )
        out[inside == 0] = fill
    return out


def resample_labels(labels: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label map (background 0 outside)."""
    return resample(labels, source, target, order=0, fill=0).astype(labels.dtype)
