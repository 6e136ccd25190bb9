"""Volume and intensity statistics of labelled structures (CT HU, PET SUV, any image)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OrganStatistics:
    """Statistics of one structure; intensities are None when the structure is empty."""

    name: str
    voxel_count: int
    volume_ml: float
    mean: float | None
    std: float | None  # population standard deviation (ddof=0)
    min: float | None
    max: float | None

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return dict(self.__dict__)


def organ_statistics(
    values: np.ndarray, affine: np.ndarray, labels: Mapping[str, np.ndarray]
) -> list[OrganStatistics]:
    """Volume, mean, standard deviation, min and max of ``values`` in each named mask.

    Parameters
    ----------
    values
        Image ``[i, j, k]`` in its real-world unit (HU, SUV).
    affine
        Voxel→patient affine; its determinant gives the voxel volume.
    labels
        Structure name → boolean mask of the image's shape (e.g. ``label_map == 1``).

    Raises
    ------
    ValueError
        If a mask's shape differs from the image's.
    """
    voxel_ml = float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    results = []
    for name, mask in labels.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise ValueError(f"{name}: mask shape {mask.shape} differs from image {values.shape}")
        inside = values[mask].astype(np.float64)
        count = int(inside.size)
        results.append(
            OrganStatistics(
                name=name,
                voxel_count=count,
                volume_ml=count * voxel_ml,
                mean=float(inside.mean()) if count else None,
                std=float(inside.std()) if count else None,
                min=float(inside.min()) if count else None,
                max=float(inside.max()) if count else None,
            )
        )
    return results
