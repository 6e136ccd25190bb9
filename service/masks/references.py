"""What an RTSTRUCT or DICOM-SEG refers to, and which structures it declares, from its header.

Pairing masks with image series needs only these references (series, instances, frame of
reference), so a whole PACS export can be matched before any contour is rasterised.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.errors import MaskInputError
from service.masks.rtstruct_reader import RTSTRUCT_SOP_CLASS, contour_points
from service.masks.seg_reader import SEG_SOP_CLASSES


class MaskKind(StrEnum):
    """The DICOM objects that carry structures."""

    RTSTRUCT = "rtstruct"
    SEG = "seg"


@dataclass(frozen=True)
class DeclaredStructure:
    """One ROI or segment as declared in the header, before any rasterising."""

    number: int
    name: str
    contours: int  # closed planar contours (RTSTRUCT) or frames (SEG); 0 means drawn nowhere


@dataclass(frozen=True)
class MaskReference:
    """The references and structures of one RTSTRUCT or SEG file."""

    path: Path
    kind: MaskKind
    series_uids: frozenset[str]
    instance_uids: frozenset[str]
    frames_of_reference: frozenset[str]
    structures: tuple[DeclaredStructure, ...]

    def describe_references(self) -> str:
        """The referenced series and frame of reference, for messages."""
        series = ", ".join(sorted(self.series_uids)) or "none"
        frames = ", ".join(sorted(self.frames_of_reference)) or "none"
        return f"referenced series {series}; frame of reference {frames}"


def mask_kind_of(ds: Dataset) -> MaskKind | None:
    """RTSTRUCT, SEG, or None for any other object."""
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return MaskKind.RTSTRUCT
    if sop_class in SEG_SOP_CLASSES or modality == "SEG":
        return MaskKind.SEG
    return None


def _uids(items: object, keyword: str) -> set[str]:
    return {str(item.get(keyword, "")).strip() for item in items or []} - {""}  # type: ignore[attr-defined]


def mask_reference(path: Path, ds: Dataset) -> MaskReference:
    """The references and declared structures of the RTSTRUCT or SEG header ``ds``.

    Raises
    ------
    MaskInputError
        If ``ds`` is neither, or declares no structure.
    """
    kind = mask_kind_of(ds)
    if kind is MaskKind.RTSTRUCT:
        return _rtstruct_reference(path, ds)
    if kind is MaskKind.SEG:
        return _seg_reference(path, ds)
    raise MaskInputError(f"{path}: a {ds.get('Modality', 'DICOM object')} is not a mask")


def _rtstruct_reference(path: Path, ds: Dataset) -> MaskReference:
    frames = ds.get("ReferencedFrameOfReferenceSequence", [])
    studies = [s for f in frames for s in f.get("RTReferencedStudySequence", [])]
    series = [s for st in studies for s in st.get("RTReferencedSeriesSequence", [])]
    instances = _uids(
        [i for s in series for i in s.get("ContourImageSequence", [])], "ReferencedSOPInstanceUID"
    )
    counts: dict[int, int] = {}
    for roi in ds.get("ROIContourSequence", []):
        contours = roi.get("ContourSequence", [])
        closed = [
            c for c in contours if c.get("ContourGeometricType", "CLOSED_PLANAR") == "CLOSED_PLANAR"
        ]
        counts[int(roi.ReferencedROINumber)] = len(closed)
        for contour in closed:
            instances |= _uids(contour.get("ContourImageSequence", []), "ReferencedSOPInstanceUID")
    declared = ds.get("StructureSetROISequence", [])
    if not declared:
        raise MaskInputError(f"{path}: the RTSTRUCT declares no ROI")
    structures = tuple(
        DeclaredStructure(
            int(r.ROINumber), str(r.get("ROIName", "")).strip(), counts.get(int(r.ROINumber), 0)
        )
        for r in declared
    )
    frame_uids = _uids(frames, "FrameOfReferenceUID") | _uids(
        declared, "ReferencedFrameOfReferenceUID"
    )
    return MaskReference(
        path=path,
        kind=MaskKind.RTSTRUCT,
        series_uids=frozenset(_uids(series, "SeriesInstanceUID")),
        instance_uids=frozenset(instances),
        frames_of_reference=frozenset(frame_uids),
        structures=structures,
    )


def _seg_reference(path: Path, ds: Dataset) -> MaskReference:
    series = ds.get("ReferencedSeriesSequence", [])
    instances = _uids(
        [i for s in series for i in s.get("ReferencedInstanceSequence", [])],
        "ReferencedSOPInstanceUID",
    )
    frames_per_segment: dict[int, int] = {}
    for group in ds.get("PerFrameFunctionalGroupsSequence", []):
        for item in group.get("SegmentIdentificationSequence", []):
            number = int(item.ReferencedSegmentNumber)
            frames_per_segment[number] = frames_per_segment.get(number, 0) + 1
        for derivation in group.get("DerivationImageSequence", []):
            instances |= _uids(
                derivation.get("SourceImageSequence", []), "ReferencedSOPInstanceUID"
            )
    segments = [s for s in ds.get("SegmentSequence", []) if int(s.SegmentNumber) > 0]
    if not segments:
        raise MaskInputError(f"{path}: the SEG declares no segment")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    labelmap = str(ds.get("SegmentationType", "")) == "LABELMAP"
    structures = tuple(
        DeclaredStructure(
            int(s.SegmentNumber),
            str(s.get("SegmentLabel", "")).strip(),
            frames
            if labelmap or not frames_per_segment
            else frames_per_segment.get(int(s.SegmentNumber), 0),
        )
        for s in segments
    )
    frame_uid = str(ds.get("FrameOfReferenceUID", "")).strip()
    return MaskReference(
        path=path,
        kind=MaskKind.SEG,
        series_uids=frozenset(_uids(series, "SeriesInstanceUID")),
        instance_uids=frozenset(instances),
        frames_of_reference=frozenset({frame_uid} - {""}),
        structures=structures,
    )


def roi_points(ds: Dataset) -> dict[int, np.ndarray]:
    """Every closed contour point of each ROI of an RTSTRUCT, ``(n, 3)`` LPS mm per ROI number."""
    out: dict[int, np.ndarray] = {}
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        arrays = [
            contour_points(c, f"ROI {number}")
            for c in roi.get("ContourSequence", [])
            if c.get("ContourGeometricType", "CLOSED_PLANAR") == "CLOSED_PLANAR"
        ]
        out[number] = np.concatenate(arrays) if arrays else np.zeros((0, 3))
    return out
