"""DICOM-SEG → regions on an image grid.

Reads binary, fractional and label-map SEG, with overlapping segments, by placing each frame by
its plane position (not its source references), so SEG written on a cropped, transposed or
slightly shifted copy of the image lattice still lands voxel for voxel.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels.registry import LabelTable
from service.library_logging import library_message
from service.masks.alignment import index_map, place
from service.regions import Region, RegionSet

logger = logging.getLogger(__name__)

SEG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation Storage
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation Storage
}
FRAME_TOLERANCE = 0.1  # voxels: how far a frame may sit from the image lattice
_FRACTIONAL_THRESHOLD = 0.5


def read_seg(
    path: Path,
    volume: Volume,
    table: LabelTable | None = None,
    tolerance: float = FRAME_TOLERANCE,
) -> RegionSet:
    """Read every segment of the SEG at ``path`` as a region on ``volume``'s grid.

    Fractional segments are binarised at half the maximum fractional value.

    Raises
    ------
    MaskInputError
        If the file is not a SEG, or its frames do not lie on the image's lattice (within
        ``tolerance`` voxels) or frame of reference.
    """
    ds = _read(path)
    frame_uid = str(ds.get("FrameOfReferenceUID", ""))
    if frame_uid and volume.frame_of_reference_uid and frame_uid != volume.frame_of_reference_uid:
        raise MaskInputError(
            f"{path}: SEG frame of reference {frame_uid} differs from series "
            f"{volume.series_instance_uid} ({volume.frame_of_reference_uid}); "
            "pass the image series it was made on"
        )
    pixels = ds.pixel_array
    if pixels.ndim == 2:
        pixels = pixels[None]
    seg_type = str(ds.get("SegmentationType", "BINARY"))
    labelmap = seg_type == "LABELMAP"
    # Segment 0 of a label-map SEG is the background.
    segments = [s for s in ds.SegmentSequence if int(s.SegmentNumber) > 0]
    numbers = [int(s.SegmentNumber) for s in segments]
    masks = {n: np.zeros(volume.shape, dtype=bool) for n in numbers}
    lost = 0
    for f, frame in enumerate(pixels):
        affine = _frame_affine(ds, f, path)
        mapping = index_map(affine, volume.affine, tolerance)
        if mapping is None:
            raise MaskInputError(
                f"{path}: frame {f + 1} does not lie on the voxel grid of series "
                f"{volume.series_instance_uid} (tolerance {tolerance} voxels); "
                "resample the segmentation onto the image first"
            )
        values = frame.T[:, :, None]  # (rows, columns) → [i, j, 1]
        if labelmap:
            for number in numbers:
                placed, n_lost = place(values == number, mapping, volume.shape)
                masks[number] |= placed
                lost += n_lost
            continue
        number = _frame_segment(ds, f, numbers, path)
        if seg_type == "FRACTIONAL":
            maximum = float(ds.get("MaximumFractionalValue", 255))
            values = values >= _FRACTIONAL_THRESHOLD * maximum
        placed, n_lost = place(values.astype(bool), mapping, volume.shape)
        masks[number] |= placed
        lost += n_lost
    regions = [_region(s, masks[int(s.SegmentNumber)], table) for s in segments]
    result = RegionSet(regions=regions, shape=volume.shape, affine=volume.affine, source=str(path))
    if lost:
        result.warnings.append(f"{lost} segmented pixels lie outside the image and were dropped")
        logger.warning("%s: %s", path.name, result.warnings[-1])
    return result


def _read(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError) as exc:
        raise MaskInputError(f"{path}: not a readable DICOM file: {library_message(exc)}") from exc
    if ds.get("SOPClassUID") not in SEG_SOP_CLASSES and ds.get("Modality") != "SEG":
        raise MaskInputError(f"{path}: not a DICOM-SEG (Modality {ds.get('Modality')})")
    if not ds.get("SegmentSequence"):
        raise MaskInputError(f"{path}: SEG without SegmentSequence")
    return ds


def _functional(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """A functional group item for ``frame``: per-frame first, then shared."""
    for groups in (
        ds.get("PerFrameFunctionalGroupsSequence"),
        ds.get("SharedFunctionalGroupsSequence"),
    ):
        if not groups:
            continue
        group = groups[frame] if groups is ds.get("PerFrameFunctionalGroupsSequence") else groups[0]
        if sequence in group and group[sequence].value:
            return group[sequence].value[0]
    return None


def _frame_affine(ds: Dataset, frame: int, path: Path) -> np.ndarray:
    position = _functional(ds, frame, "PlanePositionSequence")
    orientation = _functional(ds, frame, "PlaneOrientationSequence")
    measures = _functional(ds, frame, "PixelMeasuresSequence")
    if position is None or orientation is None or measures is None:
        raise MaskInputError(
            f"{path}: frame {frame + 1} lacks plane position, orientation or pixel spacing"
        )
    cosines = np.asarray(orientation.ImageOrientationPatient, dtype=np.float64)
    row, column = cosines[:3], cosines[3:]
    spacing = np.asarray(measures.PixelSpacing, dtype=np.float64)  # (between rows, between columns)
    affine = np.eye(4)
    affine[:3, 0] = row * spacing[1]
    affine[:3, 1] = column * spacing[0]
    normal = np.cross(row, column)
    thickness = float(measures.get("SpacingBetweenSlices") or measures.get("SliceThickness") or 1.0)
    affine[:3, 2] = normal * thickness
    affine[:3, 3] = np.asarray(position.ImagePositionPatient, dtype=np.float64)
    return affine


def _frame_segment(ds: Dataset, frame: int, numbers: list[int], path: Path) -> int:
    item = _functional(ds, frame, "SegmentIdentificationSequence")
    if item is None:
        if len(numbers) == 1:
            return numbers[0]
        raise MaskInputError(f"{path}: frame {frame + 1} does not say which segment it holds")
    number = int(item.ReferencedSegmentNumber)
    if number not in numbers:
        raise MaskInputError(f"{path}: frame {frame + 1} refers to unknown segment {number}")
    return number


def _region(segment: Dataset, mask: np.ndarray, table: LabelTable | None) -> Region:
    number = int(segment.SegmentNumber)
    name = str(segment.get("SegmentLabel", "")).strip() or f"segment_{number}"
    entry = table.find(name) if table is not None else None
    return Region(name=name, number=number, mask=mask, code=entry)
