"""What the SR and the JSON report per segment, and how it is measured from a volume.

Plain dataclasses, filled from the PET measures (:mod:`service.pet.measures`) and the organ
statistics (:mod:`service.organ_stats`), so both renderings report the very same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.dicom.volume import Volume
from service.organ_stats import OrganStatistics, organ_statistics
from service.pet.body_size import SuvType
from service.pet.measures import RegionPetMeasures, measure_regions
from service.pet.suv import SuvConversion, suv_conversion, to_suv
from service.regions import Region, RegionSet
from service.results.crops import RegionCrop
from service.results.source_attributes import derived_source


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
    """Everything reported for one segment, identified by its number (names may repeat)."""

    segment_number: int
    name: str
    voxel_count: int
    volume_ml: float
    intensity: IntensityStatistics | None = None
    pet: PetMeasurements | None = None
    #: The structure's number in the label map (or mask file): what QC verdicts are keyed by.
    label_number: int | None = None


@dataclass(frozen=True)
class MeasurementReportData:
    """The measurements of one segmentation of one series."""

    modality: str
    study_instance_uid: str
    series_instance_uid: str
    algorithm: str
    segments: list[SegmentMeasurements] = field(default_factory=list)
    suv: dict[str, object] | None = None  # the SUV conversion record of a PET series
    warnings: list[str] = field(default_factory=list)  # e.g. source attributes made valid

    def __post_init__(self) -> None:
        numbers = [s.segment_number for s in self.segments]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"segment numbers repeat: {numbers}")


_UNITS = {"CT": "HU", "PT": "SUV", "MR": "MR"}


@dataclass(frozen=True)
class MeasuredValues:
    """The image in the unit measured (HU, SUV, MR units), and how PET became SUV."""

    array: np.ndarray
    suv: SuvConversion | None = None


def measured_values(
    volume: Volume, suv_type: SuvType = SuvType.BW, values: np.ndarray | None = None
) -> MeasuredValues:
    """``volume``'s values to measure: PET as SUVs of ``suv_type``, anything else as read.

    ``values`` are such SUVs when the caller has them already (the model saw them), so a PET
    job converts its pixels once; the conversion record is then rebuilt from the headers.

    Raises
    ------
    SuvError
        If a PET volume cannot be converted to SUV.
    """
    if volume.modality != "PT":
        return MeasuredValues(np.asarray(volume.array if values is None else values))
    if values is None:
        array, conversion = to_suv(volume, suv_type)
        return MeasuredValues(array, conversion)
    if values.shape != volume.shape:
        raise ValueError(f"values of shape {values.shape} given for a {volume.shape} volume")
    return MeasuredValues(values, suv_conversion(volume, suv_type))


def measure_segments(
    volume: Volume,
    regions: RegionSet | Sequence[RegionCrop],
    segment_numbers: Mapping[int, int],
    suv_type: SuvType = SuvType.BW,
    values: MeasuredValues | None = None,
) -> list[SegmentMeasurements]:
    """Measure every region that has a segment number, on ``volume``'s values.

    ``segment_numbers`` maps a region's number to the segment it became in the SEG. PET
    volumes are measured in SUV and get the PET measures; every modality gets the volume and
    intensity statistics. Regions given as crops are measured inside their bounding box (the
    same voxels), except for the PET measures, whose SUVpeak sphere may reach outside it: those
    see one full-size mask at a time.

    Raises
    ------
    SuvError
        If a PET volume cannot be converted to SUV.
    """
    measured = values or measured_values(volume, suv_type)
    unit = _UNITS.get(volume.modality, "")
    results = []
    for region, box in _regions(regions, segment_numbers):
        (stats,) = organ_statistics(measured.array[box], volume.affine, [region])
        pet = None
        if volume.modality == "PT":
            full = region.mask
            if full.shape != volume.shape:
                full = np.zeros(volume.shape, dtype=bool)
                full[box] = region.mask
            whole = Region(region.name, region.number, full)
            (result,) = measure_regions(measured.array, volume.affine, [whole], suv_type=suv_type)
            pet = PetMeasurements.from_region(result)
        results.append(
            SegmentMeasurements(
                segment_number=segment_numbers[region.number],
                name=region.name,
                voxel_count=stats.voxel_count,
                volume_ml=stats.volume_ml,
                intensity=IntensityStatistics.from_organ(stats, unit),
                pet=pet,
                label_number=region.number,
            )
        )
    return results


def _regions(
    regions: RegionSet | Sequence[RegionCrop], segment_numbers: Mapping[int, int]
) -> Iterator[tuple[Region, tuple[slice, ...]]]:
    """Each region with a segment number, its mask cut to ``box``, in region order."""
    whole = (slice(None),) * 3
    for region in regions:
        if region.number not in segment_numbers:
            continue
        if isinstance(region, RegionCrop):
            yield Region(region.name, region.number, region.mask), region.box
        else:
            yield region, whole


def build_report(
    volume: Volume,
    regions: RegionSet | Sequence[RegionCrop],
    segment_numbers: Mapping[int, int],
    algorithm: str,
    suv_type: SuvType = SuvType.BW,
    values: np.ndarray | None = None,
) -> MeasurementReportData:
    """Measurements of ``regions`` on ``volume`` with the study and series they belong to.

    ``values``: the image already in the unit measured (see :func:`measured_values`).
    """
    measured = measured_values(volume, suv_type, values)
    conversion_warnings = list(measured.suv.warnings) if measured.suv is not None else []
    return MeasurementReportData(
        modality=volume.modality,
        study_instance_uid=volume.study_instance_uid,
        series_instance_uid=volume.series_instance_uid,
        algorithm=algorithm,
        segments=measure_segments(volume, regions, segment_numbers, suv_type, measured),
        suv=measured.suv.describe() if measured.suv is not None else None,
        warnings=[*derived_source(volume).notes, *conversion_warnings],
    )
