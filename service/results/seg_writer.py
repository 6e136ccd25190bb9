"""DICOM-SEG from regions on a source series' grid (highdicom)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.dicom.volume import Volume
from service.errors import DicomInputError, MaskInputError
from service.labels.registry import LabelEntry, LabelTable, presentation
from service.library_logging import library_message
from service.regions import distinct_names
from service.results.crops import Labels, RegionCrop, region_crops
from service.results.provenance import (
    MANUFACTURER,
    STUDY_KEYWORDS,
    AlgorithmIdentity,
    DerivedSeries,
    clip_copied_values,
    require_source_grid,
    software_version,
)
from service.results.source_attributes import derived_source, state_deidentification
from service.results.sources import Sources, checked_sources

# Used for regions no label table describes.
_GENERIC_CATEGORY = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
_GENERIC_TYPE = hd.sr.CodedConcept("85756007", "SCT", "Tissue")


class SegType(StrEnum):
    """Kinds of SEG fedseg writes."""

    BINARY = "BINARY"
    LABELMAP = "LABELMAP"


@dataclass(frozen=True)
class SegResult:
    """A written SEG and the segment number each region got, by region number."""

    dataset: Dataset
    segment_numbers: dict[int, int]


def write_seg(
    volume: Volume,
    labels: Labels,
    table: LabelTable | None,
    algorithm: AlgorithmIdentity,
    seg_type: SegType | str = SegType.BINARY,
    series: DerivedSeries | None = None,
    sources: Sources | None = None,
) -> SegResult:
    """Build a DICOM-SEG of ``labels`` referencing every source instance of ``volume``.

    Empty regions get no segment; empty frames are omitted. Binary SEG numbers segments 1..n in
    region order; label-map SEG keeps the label numbers as pixel values. ``sources`` are the
    series the labels were derived from, ``volume``'s first (default: ``volume``'s alone); the
    further ones are referenced as :mod:`service.results.sources` describes.

    Raises
    ------
    DicomInputError
        If the volume is not on its source planes, the labels are on another grid, or nothing
        is segmented.
    """
    require_source_grid(volume, "a DICOM-SEG")
    sources = checked_sources(volume, sources)
    seg_type = SegType(seg_type)
    series = series or DerivedSeries(series_description="fedseg segmentation")
    regions = list(region_crops(labels, volume, table))
    if not regions:
        raise DicomInputError(
            f"series {volume.series_instance_uid}: nothing is segmented, no SEG to write"
        )
    if seg_type is SegType.LABELMAP:
        regions.sort(key=lambda r: r.number)
        numbers = {r.number: r.number for r in regions}
    else:
        numbers = {r.number: n for n, r in enumerate(regions, start=1)}
    pixel_array = _frames(regions, [numbers[r.number] for r in regions], volume.shape)
    if pixel_array is None:
        if seg_type is SegType.LABELMAP:
            raise MaskInputError(
                f"series {volume.series_instance_uid}: regions overlap; overlapping regions "
                "cannot form one label map"
            )
        pixel_array = _stacked_frames(regions, volume.shape)
    family = codes.cid7162.ArtificialIntelligence
    identification = hd.AlgorithmIdentificationSequence(
        name=algorithm.name, family=family, version=algorithm.version
    )
    tracking_ids = distinct_names([_label(r, table) for r in regions])
    descriptions = [
        _description(numbers[r.number], r, tracking, identification, table)
        for r, tracking in zip(regions, tracking_ids, strict=True)
    ]
    source = derived_source(volume).header
    try:
        seg = hd.seg.Segmentation(
            source_images=[source, *volume.headers[1:]],
            pixel_array=pixel_array,
            segmentation_type=seg_type.value,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=series.series_number,
            sop_instance_uid=hd.UID(),
            instance_number=series.instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm.name,
            software_versions=software_version(),
            device_serial_number="0",
            series_description=series.series_description,
            omit_empty_frames=True,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise DicomInputError(
            f"series {volume.series_instance_uid}: highdicom refused the SEG: "
            f"{library_message(exc)}"
        ) from exc
    # Common Instance Reference and Source Image Sequence: every instance of every series.
    seg.ReferencedSeriesSequence = sources.referenced_series()
    seg.SourceImageSequence = sources.source_images()
    _reference_further_planes(seg, sources)
    clip_copied_values(seg, STUDY_KEYWORDS)
    state_deidentification(seg, source)
    return SegResult(dataset=seg, segment_numbers=numbers)


def _reference_further_planes(seg: Dataset, sources: Sources) -> None:
    """Add to each frame's derivation the further series' planes resampled onto its plane."""
    if not sources.further:
        return
    for frame in seg.PerFrameFunctionalGroupsSequence:
        for derivation in frame.get("DerivationImageSequence", []):
            items = list(derivation.get("SourceImageSequence", []))
            if not items:
                continue
            frame_number = items[0].get("ReferencedFrameNumber")
            k = sources.primary_plane(
                str(items[0].ReferencedSOPInstanceUID),
                None if frame_number is None else int(frame_number),
            )
            if k is None:
                raise DicomInputError(
                    f"series {sources.primary.series_instance_uid}: a SEG frame derives from "
                    f"instance {items[0].ReferencedSOPInstanceUID}, which is not one of its planes"
                )
            derivation.SourceImageSequence = [*items, *sources.derivation_items(k)]


def _frames(
    regions: list[RegionCrop], values: list[int], shape: tuple[int, int, int]
) -> np.ndarray | None:
    """One contiguous (frames, rows, columns) label map with ``values``; None if regions overlap.

    highdicom takes such a map for BINARY SEG too (consecutive segment numbers from 1) and
    splits it plane by plane, so no full-size mask per segment is ever built.
    """
    dtype = np.uint8 if max(values) <= np.iinfo(np.uint8).max else np.uint16
    frames = np.zeros((shape[2], shape[1], shape[0]), dtype=dtype)
    for region, value in zip(regions, values, strict=True):
        i, j, k = region.box
        view = frames[k, j, i]
        mask = region.mask.transpose(2, 1, 0)
        if np.any(view[mask]):
            return None
        view[mask] = value
    return frames


def _stacked_frames(regions: list[RegionCrop], shape: tuple[int, int, int]) -> np.ndarray:
    """(frames, rows, columns, segments) binary stack, for regions that overlap."""
    stack = np.zeros((shape[2], shape[1], shape[0], len(regions)), dtype=np.uint8)
    for n, region in enumerate(regions):
        i, j, k = region.box
        stack[k, j, i, n] = region.mask.transpose(2, 1, 0)
    return stack


def _entry(region: RegionCrop, table: LabelTable | None) -> LabelEntry | None:
    if region.code is not None:
        return region.code
    return table.find(region.name) if table is not None else None


def _label(region: RegionCrop, table: LabelTable | None) -> str:
    """The SegmentLabel: the label table's display name, else the region's own label."""
    entry = _entry(region, table)
    return entry.display_name if entry is not None else region.name


def _description(
    number: int,
    region: RegionCrop,
    tracking_id: str,
    identification: hd.AlgorithmIdentificationSequence,
    table: LabelTable | None,
) -> hd.seg.SegmentDescription:
    entry = _entry(region, table)
    if entry is None:
        category, type_, color = _GENERIC_CATEGORY, _GENERIC_TYPE, None
    else:
        category = hd.sr.CodedConcept(
            entry.category.code, entry.category.scheme, entry.category.meaning
        )
        type_ = hd.sr.CodedConcept(entry.type.code, entry.type.scheme, entry.type.meaning)
        shown = presentation(entry, table.task if table is not None else None)
        color = hd.color.CIELabColor.from_rgb(*shown.color)
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=_label(region, table)[:64],
        segmented_property_category=category,
        segmented_property_type=type_,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=identification,
        tracking_uid=hd.UID(),
        tracking_id=tracking_id,
        display_color=color,
    )
    if entry is not None and entry.laterality is not None:
        side = entry.laterality
        modifier = hd.sr.CodedConcept(side.code, side.scheme, side.meaning)
        description.SegmentedPropertyTypeCodeSequence[
            0
        ].SegmentedPropertyTypeModifierCodeSequence = [modifier]
    return description
