"""PET response measures per region and per lesion: SUVmax/mean/median/peak, MTV, TLG.

A region (a segment, ROI or label) is split into lesions, its connected components under the
chosen connectivity. Totals are over the whole region: TMTV is the region volume and total TLG
the sum of lesion TLGs (equal to region SUVmean × TMTV).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from scipy import ndimage

from service.dicom.geometry import voxel_spacing, voxel_volume_ml
from service.pet.body_size import SuvType
from service.pet.peak import sphere_weights, suv_peak
from service.regions import Region


class Connectivity(int, Enum):
    """Which neighbours join voxels into one lesion."""

    FACE = 6
    FACE_EDGE = 18
    FACE_EDGE_VERTEX = 26

    @property
    def structure(self) -> np.ndarray:
        """The 3x3x3 structuring element for :func:`scipy.ndimage.label`."""
        rank = {6: 1, 18: 2, 26: 3}[self.value]
        return ndimage.generate_binary_structure(3, rank)


@dataclass(frozen=True)
class LesionPetMeasures:
    """Measures of one connected lesion; SUVs in the unit of ``suv_type``."""

    index: int  # 1-based, in order of decreasing MTV
    voxel_count: int
    suv_max: float
    suv_min: float
    suv_mean: float
    suv_median: float
    suv_peak_local: float
    suv_peak_global: float
    mtv_ml: float
    tlg: float  # SUVmean × MTV

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RegionPetMeasures:
    """Measures of one region and of each lesion in it. SUVs are None for an empty region."""

    number: int  # the region's segment, ROI or label number: its identity
    name: str  # its label, which other regions may share
    suv_type: SuvType
    lesion_count: int
    voxel_count: int
    suv_max: float | None
    suv_min: float | None
    suv_mean: float | None
    suv_median: float | None
    suv_peak_local: float | None
    suv_peak_global: float | None
    mtv_ml: float  # TMTV of the region
    tlg: float  # total lesion glycolysis of the region
    lesions: list[LesionPetMeasures] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        data = {k: v for k, v in self.__dict__.items() if k != "lesions"}
        data["suv_type"] = self.suv_type.value
        data["suv_unit"] = self.suv_type.unit
        data["lesions"] = [lesion.as_dict() for lesion in self.lesions]
        return data


def _basic(values: np.ndarray, voxel_ml: float) -> dict[str, float]:
    values = values.astype(np.float64)  # float32 sums of large regions lose digits
    mean = float(values.mean())
    mtv = values.size * voxel_ml
    return {
        "suv_max": float(values.max()),
        "suv_min": float(values.min()),
        "suv_mean": mean,
        "suv_median": float(np.median(values)),
        "mtv_ml": mtv,
        "tlg": mean * mtv,
    }


def measure_lesions(
    suv: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray,
    connectivity: Connectivity = Connectivity.FACE_EDGE_VERTEX,
    kernel: np.ndarray | None = None,
) -> list[LesionPetMeasures]:
    """Measures of each connected component of ``mask``, largest first.

    ``kernel`` is the SUVpeak sphere (:func:`~service.pet.peak.sphere_weights`), computed
    from the affine when not given.
    """
    labels, count = ndimage.label(mask, structure=Connectivity(connectivity).structure)
    voxel_ml = voxel_volume_ml(affine)
    if kernel is None:
        kernel = sphere_weights(voxel_spacing(affine))
    objects = ndimage.find_objects(labels)
    lesions = []
    pad = [n // 2 for n in kernel.shape]
    for number, box in enumerate(objects, start=1):
        if box is None:
            continue
        # Crop to the lesion plus the sphere radius: same peak, without whole-image masks.
        crop = tuple(
            slice(max(b.start - p, 0), min(b.stop + p, n))
            for b, p, n in zip(box, pad, mask.shape, strict=True)
        )
        component = labels[crop] == number
        values = suv[crop][component]
        peak = suv_peak(suv[crop], component, affine, kernel)
        lesions.append(
            {
                **_basic(values, voxel_ml),
                "voxel_count": int(values.size),
                "suv_peak_local": peak.local,
                "suv_peak_global": peak.global_,
            }
        )
    lesions.sort(key=lambda m: (-m["voxel_count"], -m["suv_max"]))
    assert len(lesions) == count
    return [LesionPetMeasures(index=i, **m) for i, m in enumerate(lesions, start=1)]  # type: ignore[arg-type]


def measure_region(
    region: Region,
    suv: np.ndarray,
    affine: np.ndarray,
    connectivity: Connectivity = Connectivity.FACE_EDGE_VERTEX,
    suv_type: SuvType = SuvType.BW,
) -> RegionPetMeasures:
    """Measures of one region and its lesions.

    Raises
    ------
    ValueError
        If the mask does not have the image's shape.
    """
    mask, name, number = region.mask, region.name, region.number
    if mask.shape != suv.shape:
        raise ValueError(
            f"region {number} ({name!r}): mask shape {mask.shape} differs from image {suv.shape}"
        )
    if not mask.any():
        return RegionPetMeasures(
            number, name, SuvType(suv_type), 0, 0, None, None, None, None, None, None, 0.0, 0.0
        )
    kernel = sphere_weights(voxel_spacing(affine))
    lesions = measure_lesions(suv, affine, mask, connectivity, kernel)
    basic = _basic(suv[mask], voxel_volume_ml(affine))
    # Sphere means do not depend on the mask, so the region's peaks follow from its lesions:
    # global = best lesion global; local = best local among lesions holding the hottest voxel.
    hottest = max(lesion.suv_max for lesion in lesions)
    local = max(lesion.suv_peak_local for lesion in lesions if lesion.suv_max == hottest)
    best_global = max(lesion.suv_peak_global for lesion in lesions)
    return RegionPetMeasures(
        number=number,
        name=name,
        suv_type=SuvType(suv_type),
        lesion_count=len(lesions),
        voxel_count=int(mask.sum()),
        suv_max=basic["suv_max"],
        suv_min=basic["suv_min"],
        suv_mean=basic["suv_mean"],
        suv_median=basic["suv_median"],
        suv_peak_local=local,
        suv_peak_global=best_global,
        mtv_ml=basic["mtv_ml"],
        tlg=float(sum(lesion.tlg for lesion in lesions)),
        lesions=lesions,
    )


def measure_regions(
    suv: np.ndarray,
    spacing_affine: np.ndarray,
    regions: Iterable[Region],
    connectivity: Connectivity = Connectivity.FACE_EDGE_VERTEX,
    suv_type: SuvType = SuvType.BW,
) -> list[RegionPetMeasures]:
    """PET measures of every region (boolean masks on the SUV grid), in the given order.

    Parameters
    ----------
    suv
        SUV image ``[i, j, k]`` (see :func:`service.pet.suv.to_suv`).
    spacing_affine
        Voxel→patient affine of the grid; gives voxel size and volume.
    regions
        The regions, each with a mask of the same shape as ``suv``; names may repeat.
    connectivity
        Which neighbours join voxels into one lesion.
    suv_type
        The SUV type of ``suv`` (recorded in the results).
    """
    return [
        measure_region(region, suv, spacing_affine, connectivity, suv_type) for region in regions
    ]
