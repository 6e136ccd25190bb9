"""Volume and intensity statistics of labelled structures (CT HU, PET SUV, any image)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from service.dicom.geometry import voxel_volume_ml
from service.regions import Region


@dataclass(frozen=True)
class OrganStatistics:
    """Statistics of one structure; intensities are None when the structure is empty."""

    number: int  # the region's segment, ROI or label number: its identity
    name: str  # its label, which other regions may share
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
    values: np.ndarray, affine: np.ndarray, regions: Iterable[Region]
) -> list[OrganStatistics]:
    """Volume, mean, standard deviation, min and max of ``values`` in each named mask.

    Parameters
    ----------
    values
        Image ``[i, j, k]`` in its real-world unit (HU, SUV).
    affine
        Voxel→patient affine; its determinant gives the voxel volume.
    regions
        The structures, each with a boolean mask of the image's shape; names may repeat.

    Raises
    ------
    ValueError
        If a mask's shape differs from the image's.
    """
    voxel_ml = voxel_volume_ml(affine)
    results = []
    for region in regions:
        mask, name = region.mask, region.name
        if mask.shape != values.shape:
            raise ValueError(
                f"region {region.number} ({name}): mask shape {mask.shape} differs from image "
                f"{values.shape}"
            )
        inside = values[mask].astype(np.float64)
        count = int(inside.size)
        results.append(
            OrganStatistics(
                number=region.number,
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
