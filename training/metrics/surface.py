"""Surface distances in mm between two binary masks: HD95 and mean surface distance.

A surface voxel is a foreground voxel with a background face-neighbour (voxels outside the array
count as background). Distances run between surface voxel centres through the spacing-aware
Euclidean distance transform, so anisotropic voxels are measured in mm.

When exactly one mask is empty no distance exists; the result is then the diagonal of the image
in mm (the largest distance the grid can hold) with ``defined=False``, so a false positive or a
miss is penalised and reported instead of becoming NaN or infinity. Two empty masks are 0 mm apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class SurfaceDistances:
    """Symmetric surface distances between a prediction and its truth, mm."""

    hd95: float
    mean: float
    hausdorff: float
    #: False when exactly one mask is empty and the distances are the worst-case diagonal.
    defined: bool


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the surface voxels of ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, structure=_FACES, border_value=0)
    return mask & ~eroded


def _directed(
    from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """Distance from each voxel of ``from_surface`` to the nearest voxel of ``to_surface``."""
    field = ndimage.distance_transform_edt(~to_surface, sampling=tuple(spacing))
    return np.asarray(field)[from_surface]


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]
) -> SurfaceDistances:
    """HD95, mean and maximum symmetric surface distance between ``pred`` and ``truth``.

    HD95 is the larger of the two directed 95th percentiles; the mean surface distance averages
    every surface voxel's distance from both sides together.

    Parameters
    ----------
    pred, truth
        Binary masks of one shape, indexed like the image.
    spacing
        Voxel size along each array axis, mm.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    if len(spacing) != pred.ndim or any(s <= 0 for s in spacing):
        raise ValueError(f"spacing {tuple(spacing)} must give one positive size per axis")
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return SurfaceDistances(hd95=0.0, mean=0.0, hausdorff=0.0, defined=True)
    if has_pred != has_truth:
        worst = float(np.linalg.norm(np.asarray(pred.shape) * np.asarray(spacing, dtype=float)))
        return SurfaceDistances(hd95=worst, mean=worst, hausdorff=worst, defined=False)
    pred_surface, truth_surface = surface(pred), surface(truth)
    pred_to_truth = _directed(pred_surface, truth_surface, spacing)
    truth_to_pred = _directed(truth_surface, pred_surface, spacing)
    both = np.concatenate([pred_to_truth, truth_to_pred])
    return SurfaceDistances(
        hd95=float(max(np.percentile(pred_to_truth, 95), np.percentile(truth_to_pred, 95))),
        mean=float(both.mean()),
        hausdorff=float(both.max()),
        defined=True,
    )
