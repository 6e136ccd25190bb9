"""RTSTRUCT from regions on a source series' grid: pixel-edge contours, one ROI per region."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from service.dicom.volume import Volume
from service.errors import DicomInputError
from service.labels.registry import LabelTable, RoiInterpretedType, presentation
from service.regions import distinct_names
from service.results.contours import trace_loops
from service.results.crops import Labels, RegionCrop, region_crops
from service.results.provenance import (
    MANUFACTURER,
    STUDY_KEYWORDS,
    AlgorithmIdentity,
    DerivedSeries,
    clip_copied_values,
    frame_of_reference_uid,
    require_source_grid,
    software_version,
)
from service.results.source_attributes import (
    TYPE2_KEYWORDS,
    derived_source,
    state_deidentification,
)
from service.results.sources import SourceImage, Sources, checked_sources

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_DEFAULT_COLOR = (255, 255, 0)
_CONTOUR_DATA = Tag(0x3006, 0x0050)
# Coordinates are written with 4 decimals: "-123456789.1234" is 15 characters, within the
# 16 that DS allows; larger magnitudes (never patient millimetres) go through pydicom.
_PLAIN_DS_LIMIT = 1e9
_TRAILING_ZEROS = re.compile(r"\.?0+(?=\\|$)")
_COPIED = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
)
# Type 2 attributes: present, empty when the source has no value (Patient, General Study, then
# the RT Series and Frame of Reference modules' own).
_TYPE2_EMPTY = (*TYPE2_KEYWORDS, "PositionReferenceIndicator", "OperatorsName")


@dataclass(frozen=True)
class RtstructResult:
    """A written RTSTRUCT and the ROI number of each region, by region number."""

    dataset: Dataset
    roi_numbers: dict[int, int]


def write_rtstruct(
    volume: Volume,
    labels: Labels,
    table: LabelTable | None,
    algorithm: AlgorithmIdentity,
    series: DerivedSeries | None = None,
    sources: Sources | None = None,
) -> RtstructResult:
    """Build an RTSTRUCT with one ROI per non-empty region, contours along pixel edges.

    The contours reference ``volume``'s planes; the Referenced Frame of Reference Sequence
    lists every series of ``sources`` (default: ``volume``'s alone), ``volume``'s first.

    ROI names are the labels' TG-263 names where the label table has them, else the regions'
    labels; repeated names are numbered ("GTV", "GTV_2"; "Neoplasm, Secondary 2"), since a
    planning system identifies structures by name.

    Raises
    ------
    DicomInputError
        If the volume is not on its source planes or the labels are on another grid.
    """
    require_source_grid(volume, "an RTSTRUCT")
    sources = checked_sources(volume, sources)
    series = series or DerivedSeries(series_number=901, series_description="fedseg structures")
    ds = _base(volume, algorithm, series)
    ds.ReferencedFrameOfReferenceSequence = Sequence(sources.rt_referenced_frames())
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    ds.RTROIObservationsSequence = Sequence()
    numbers = {}
    task = table.task if table is not None else None
    rois = [_Roi.of(region, task) for region in region_crops(labels, volume, table)]
    names = _roi_names([roi.name for roi in rois])
    for number, (roi, name) in enumerate(zip(rois, names, strict=True), start=1):
        numbers[roi.region.number] = number
        _add_roi(ds, number, replace(roi, name=name), volume, algorithm)
    if not numbers:
        raise DicomInputError(
            f"series {volume.series_instance_uid}: nothing is segmented, no RTSTRUCT to write"
        )
    clip_copied_values(ds, STUDY_KEYWORDS)
    return RtstructResult(dataset=ds, roi_numbers=numbers)


def _base(volume: Volume, algorithm: AlgorithmIdentity, series: DerivedSeries) -> Dataset:
    source = derived_source(volume).header
    now = datetime.now()
    ds = Dataset()
    for keyword in _COPIED:
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    for keyword in _TYPE2_EMPTY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    state_deidentification(ds, source)
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = hd.UID()
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = hd.UID()
    ds.SeriesNumber = series.series_number
    ds.InstanceNumber = series.instance_number
    ds.SeriesDescription = series.series_description
    ds.SeriesDate = ds.InstanceCreationDate = ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.InstanceCreationTime = ds.StructureSetTime = now.strftime("%H%M%S")
    ds.FrameOfReferenceUID = frame_of_reference_uid(volume)
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = algorithm.name
    ds.SoftwareVersions = software_version()
    ds.StructureSetLabel = algorithm.name[:16]
    ds.StructureSetName = f"{algorithm.name} {algorithm.version}"[:64]
    ds.ApprovalStatus = "UNAPPROVED"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def _image_ref(volume: Volume, k: int) -> Dataset:
    plane = volume.slices[k]
    return SourceImage(plane.sop_class_uid, plane.sop_instance_uid, plane.frame_number).item()


@dataclass(frozen=True)
class _Roi:
    """A region as an ROI: its name, colour and RT ROI Interpreted Type."""

    region: RegionCrop
    name: str
    color: tuple[int, int, int]
    kind: RoiInterpretedType

    @classmethod
    def of(cls, region: RegionCrop, task: str | None) -> _Roi:
        if region.code is None:
            return cls(region, region.name, _DEFAULT_COLOR, RoiInterpretedType.ORGAN)
        entry = presentation(region.code, task)
        return cls(
            region,
            entry.tg263_name or entry.display_name,
            entry.color,
            entry.rt_roi_interpreted_type,
        )


def _roi_names(names: list[str]) -> list[str]:
    """Distinct ROI names; TG-263 names (no spaces) are numbered with "_" to stay TG-263."""
    spaced = distinct_names(names)
    return [
        re.sub(r" (\d+)$", r"_\1", numbered) if " " not in name else numbered
        for name, numbered in zip(names, spaced, strict=True)
    ]


def _add_roi(
    ds: Dataset, number: int, roi: _Roi, volume: Volume, algorithm: AlgorithmIdentity
) -> None:
    item = Dataset()
    item.ROINumber = number
    item.ReferencedFrameOfReferenceUID = frame_of_reference_uid(volume)
    item.ROIName = roi.name
    item.ROIGenerationAlgorithm = "AUTOMATIC"
    item.ROIGenerationDescription = f"{algorithm.name} {algorithm.version}"[:64]
    ds.StructureSetROISequence.append(item)
    contours = Dataset()
    contours.ReferencedROINumber = number
    contours.ROIDisplayColor = list(roi.color)
    contours.ContourSequence = Sequence(_contours(roi.region, volume))
    ds.ROIContourSequence.append(contours)
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    observation.RTROIInterpretedType = roi.kind.value
    observation.ROIInterpreter = ""
    ds.RTROIObservationsSequence.append(observation)


def _contours(region: RegionCrop, volume: Volume) -> list[Dataset]:
    items: list[Dataset] = []
    i0, j0, k0 = region.offset
    planes = np.ascontiguousarray(np.moveaxis(region.mask, 2, 0))  # [k][i, j], each contiguous
    for dk in np.flatnonzero(planes.any(axis=(1, 2))):
        k = k0 + int(dk)
        for loop in trace_loops(planes[dk]):
            voxels = np.c_[
                loop + np.array([i0, j0]), np.full(len(loop), float(k)), np.ones(len(loop))
            ]
            points = (volume.affine @ voxels.T)[:3].T
            item = Dataset()
            item.ContourImageSequence = Sequence([_image_ref(volume, k)])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            item.ContourNumber = len(items) + 1
            item[_CONTOUR_DATA] = _contour_data(points.ravel())
            # Declared as read with the encoding pydicom gives a new item, the raw text is
            # written as it is instead of being decoded and encoded again (ASCII either way).
            item.set_original_encoding(False, True, default_encoding)
            items.append(item)
    return items


def _contour_data(values: np.ndarray) -> RawDataElement:
    """ContourData as encoded DS text: at most 4 decimals, no trailing zeros, each ≤ 16 chars.

    Encoding the text directly avoids one pydicom DS object per coordinate (hundreds of
    thousands on a CT); pydicom decodes it like any read element when it is accessed.
    """
    rounded = np.round(values, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    if np.all(np.abs(rounded) < _PLAIN_DS_LIMIT):
        text = _TRAILING_ZEROS.sub("", "\\".join(["%.4f"] * len(rounded)) % tuple(rounded))
    else:
        text = "\\".join(format_number_as_ds(float(v)) for v in rounded)
    raw = text.encode("ascii")
    if len(raw) % 2:
        raw += b" "
    return RawDataElement(_CONTOUR_DATA, "DS", len(raw), raw, 0, False, True)
