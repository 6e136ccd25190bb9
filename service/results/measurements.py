"""What the SR and the JSON report per segment, and how it is measured from a volume.

Plain dataclasses, filled from the PET measures (:mod:`service.pet.measures`) and the organ
statistics (:mod:`service.organ_stats`), so both renderings report the very same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.dicom.volume import Volume
from service.masks.regions import RegionSet
from service.organ_stats import OrganStatistics, organ_statistics
from service.pet.measures import RegionPetMeasures, measure_regions
from service.pet.suv import SuvType, to_suv
from service.results.crops import RegionCrop


@dataclass(frozen=True)
class PetMeasurements:
    """SUV measures of one segment (SUV of ``suv_type``; volumes in mL, TLG in g)."""

    suv_type: str
    lesion_count: int
    suv_max: float | None
    suv_mean: float | None
    suv_median: float | None
    suv_peak_local: float | None  # SUVpeak around the hottest voxel (1 mL sphere)
    suv_peak_global: float | None  # highest 1 mL sphere mean anywhere in the segment
    mtv_ml: float
    tlg: float

    @classmethod
    def from_region(cls, region: RegionPetMeasures) -> PetMeasurements:
        """Copy the PET helper's region measures."""
        return cls(
            suv_type=str(region.suv_type.value),
            lesion_count=region.lesion_count,
            suv_max=region.suv_max,
            suv_mean=region.suv_mean,
            suv_median=region.suv_median,
            suv_peak_local=region.suv_peak_local,
            suv_peak_global=region.suv_peak_global,
            mtv_ml=region.mtv_ml,
            tlg=region.tlg,
        )


@dataclass(frozen=True)
class IntensityStatistics:
    """Image values inside one segment, in ``unit`` (``HU``, ``SUV`` or ``MR``)."""

    unit: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None

    @classmethod
    def from_organ(cls, stats: OrganStatistics, unit: str) -> IntensityStatistics:
        """Copy the organ statistics of one structure."""
        return cls(unit=unit, mean=stats.mean, std=stats.std, min=stats.min, max=stats.max)


@dataclass(frozen=True)
class SegmentMeasurements:
    """Everything reported for one segment."""

    segment_number: int
    name: str
    voxel_count: int
    volume_ml: float
    intensity: IntensityStatistics | None = None
    pet: PetMeasurements | None = None


@dataclass(frozen=True)
class MeasurementReportData:
    """The measurements of one segmentation of one series."""

    modality: str
    study_instance_uid: str
    series_instance_uid: str
    algorithm: str
    segments: list[SegmentMeasurements] = field(default_factory=list)

    def __post_init__(self) -> None:
        numbers = [s.segment_number for s in self.segments]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"segment numbers repeat: {numbers}")


_UNITS = {"CT": "HU", "PT": "SUV", "MR": "MR"}


def measure_segments(
    volume: Volume,
    regions: RegionSet | Sequence[RegionCrop],
    segment_numbers: dict[str, int],
    suv_type: SuvType = SuvType.BW,
) -> list[SegmentMeasurements]:
    """Measure every region that has a segment number, on ``volume``'s values.

    PET volumes are converted to SUV first and get the PET measures; every modality gets the
    volume and intensity statistics. Regions given as crops are measured inside their
    bounding box (the same voxels), except for the PET measures, whose SUVpeak sphere may
    reach outside it: those see one full-size mask at a time.

    Raises
    ------
    SuvError
        If a PET volume cannot be converted to SUV.
    """
    values = np.asarray(volume.array)
    if volume.modality == "PT":
        values, _ = to_suv(volume, suv_type)
    unit = _UNITS.get(volume.modality, "")
    results = []
    for name, box, mask in _masks(regions, volume.shape, segment_numbers):
        (stats,) = organ_statistics(values[box], volume.affine, {name: mask})
        pet = None
        if volume.modality == "PT":
            full = mask
            if mask.shape != volume.shape:
                full = np.zeros(volume.shape, dtype=bool)
                full[box] = mask
            (measured,) = measure_regions(values, volume.affine, {name: full}, suv_type=suv_type)
            pet = PetMeasurements.from_region(measured)
        results.append(
            SegmentMeasurements(
                segment_number=segment_numbers[name],
                name=name,
                voxel_count=stats.voxel_count,
                volume_ml=stats.volume_ml,
                intensity=IntensityStatistics.from_organ(stats, unit),
                pet=pet,
            )
        )
    return results


def _masks(
    regions: RegionSet | Sequence[RegionCrop],
    shape: tuple[int, int, int],
    segment_numbers: dict[str, int],
) -> Iterator[tuple[str, tuple[slice, ...], np.ndarray]]:
    """(name, box, mask) of every region with a segment number, in region order."""
    whole = (slice(None),) * 3
    for region in regions:
        if region.name not in segment_numbers:
            continue
        if isinstance(region, RegionCrop):
            yield region.name, region.box, region.mask
        else:
            yield region.name, whole, region.mask


def build_report(
    volume: Volume,
    regions: RegionSet | Sequence[RegionCrop],
    segment_numbers: dict[str, int],
    algorithm: str,
    suv_type: SuvType = SuvType.BW,
) -> MeasurementReportData:
    """Measurements of ``regions`` on ``volume`` with the study and series they belong to."""
    return MeasurementReportData(
        modality=volume.modality,
        study_instance_uid=volume.study_instance_uid,
        series_instance_uid=volume.series_instance_uid,
        algorithm=algorithm,
        segments=measure_segments(volume, regions, segment_numbers, suv_type),
    )
