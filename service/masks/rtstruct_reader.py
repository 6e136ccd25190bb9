"""RTSTRUCT → regions: planar contours rasterised on an image grid.

A voxel is inside a ROI when its centre is inside an odd number of the ROI's contours on that
slice (even-odd rule), so holes drawn as inner contours and several islands per slice come out
right without relying on contour orientation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels.registry import LabelTable
from service.library_logging import library_message
from service.regions import Region, RegionSet

logger = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
_CONTOUR_DATA = 0x30060050
_RASTERISED_TYPES = {"CLOSED_PLANAR"}
_SKIPPED_TYPES = {"POINT", "OPEN_PLANAR", "OPEN_NONPLANAR"}


@dataclass(frozen=True)
class ReaderOptions:
    """How strictly contours must fit the target grid.

    Contours are placed by position, not by their image references: cropped or re-exported
    series (as in the IBSI data) carry new SOP instance UIDs while their geometry is unchanged.
    """

    slice_tolerance: float = 0.1  # voxels along k between a contour's plane and a slice


def read_rtstruct(
    path: Path,
    volume: Volume,
    table: LabelTable | None = None,
    options: ReaderOptions | None = None,
) -> RegionSet:
    """Rasterise every ROI of the RTSTRUCT at ``path`` on ``volume``'s grid.

    An ROI with a contour that does not fit the grid (between slices, outside the series,
    malformed) is refused on its own: it is left out, with a warning naming it, and recorded
    in ``RegionSet.refused``; the other ROIs are kept. Only when no ROI with contours fits is
    the whole file refused (it then belongs to another series).

    Raises
    ------
    MaskInputError
        If the file is not an RTSTRUCT, its frame of reference does not belong to ``volume``,
        or no ROI with contours fits the grid.
    """
    options = options or ReaderOptions()
    ds = _read(path)
    warnings = _check_frame_of_reference(ds, volume, path)
    names = {
        int(r.ROINumber): str(r.get("ROIName", "")).strip() for r in ds.StructureSetROISequence
    }
    regions: list[Region] = []
    refused: dict[int, str] = {}
    for roi_contour in ds.get("ROIContourSequence", []):
        number = int(roi_contour.ReferencedROINumber)
        name = names.get(number) or f"roi_{number}"
        where = f"ROI {name!r} (number {number})"
        if number in refused or any(r.number == number for r in regions):
            # Two ROI Contour items for one ROI: which one is the ROI is unknown.
            regions = [r for r in regions if r.number != number]
            refused[number] = f"{where}: the RTSTRUCT has more than one ROI Contour item for it"
            continue
        try:
            mask = _roi_mask(roi_contour, volume, options, where)
        except MaskInputError as exc:
            refused[number] = str(exc)
            continue
        entry = table.find(name) if table is not None else None
        regions.append(Region(name=name, number=number, mask=mask, code=entry))
    if refused and not any(r.mask.any() for r in regions):
        raise MaskInputError(f"{path}: {next(iter(refused.values()))}")
    if not regions:
        raise MaskInputError(f"{path}: the RTSTRUCT holds no ROI contours")
    warnings += [
        f"{reason}; this ROI is left out, the others are kept" for reason in refused.values()
    ]
    for warning in warnings:
        logger.warning("%s: %s", path.name, warning)
    return RegionSet(
        regions=regions,
        shape=volume.shape,
        affine=volume.affine,
        source=str(path),
        warnings=warnings,
        refused=refused,
    )


def _roi_mask(
    roi_contour: Dataset, volume: Volume, options: ReaderOptions, where: str
) -> np.ndarray:
    """One ROI's contours rasterised on ``volume``'s grid; MaskInputError if one does not fit."""
    mask = np.zeros(volume.shape, dtype=bool)
    for contour in roi_contour.get("ContourSequence", []):
        _add_contour(mask, contour, volume, options, where)
    return mask


def _read(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError) as exc:
        raise MaskInputError(f"{path}: not a readable DICOM file: {library_message(exc)}") from exc
    if ds.get("Modality") != "RTSTRUCT" and ds.get("SOPClassUID") != RTSTRUCT_SOP_CLASS:
        raise MaskInputError(f"{path}: not an RTSTRUCT (Modality {ds.get('Modality')})")
    if "StructureSetROISequence" not in ds:
        raise MaskInputError(f"{path}: RTSTRUCT without StructureSetROISequence")
    return ds


def _referenced_series(ds: Dataset) -> set[str]:
    return {
        str(series.get("SeriesInstanceUID", ""))
        for frame in ds.get("ReferencedFrameOfReferenceSequence", [])
        for study in frame.get("RTReferencedStudySequence", [])
        for series in study.get("RTReferencedSeriesSequence", [])
    } - {""}


def _check_frame_of_reference(ds: Dataset, volume: Volume, path: Path) -> list[str]:
    """Refuse an RTSTRUCT of another frame of reference, unless it names this very series.

    Some writers (rt-utils among them) invent a new FrameOfReferenceUID while referencing the
    right series; those are read with a warning.
    """
    referenced = {
        str(item.get("FrameOfReferenceUID", ""))
        for item in ds.get("ReferencedFrameOfReferenceSequence", [])
    } - {""}
    ours = volume.frame_of_reference_uid
    if not referenced or not ours or ours in referenced:
        return []
    if volume.series_instance_uid in _referenced_series(ds):
        return [
            f"frame of reference {', '.join(sorted(referenced))} differs from the image's "
            f"{ours}, but the RTSTRUCT references this series; read anyway"
        ]
    raise MaskInputError(
        f"{path}: the RTSTRUCT refers to frame of reference {', '.join(sorted(referenced))}, "
        f"but series {volume.series_instance_uid} uses {ours}; "
        "pass the image series the structures were drawn on"
    )


def _add_contour(
    mask: np.ndarray, contour: Dataset, volume: Volume, options: ReaderOptions, where: str
) -> None:
    kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
    if kind in _SKIPPED_TYPES:
        return
    if kind not in _RASTERISED_TYPES:
        raise MaskInputError(f"{where}: unknown ContourGeometricType {kind!r}")
    points = contour_points(contour, where)
    if len(points) < 3:
        raise MaskInputError(f"{where}: a closed contour has only {len(points)} point(s)")
    voxels = (np.linalg.inv(volume.affine) @ np.c_[points, np.ones(len(points))].T)[:3].T
    k = float(np.mean(voxels[:, 2]))
    k_index = round(k)
    spread = float(np.max(np.abs(voxels[:, 2] - k_index)))
    if spread > options.slice_tolerance:
        raise MaskInputError(
            f"{where}: a contour lies {spread:.2f} slices off the nearest slice of series "
            f"{volume.series_instance_uid} (or is not planar on its grid)"
        )
    if not 0 <= k_index < mask.shape[2]:
        refs = [str(r.ReferencedSOPInstanceUID) for r in contour.get("ContourImageSequence", [])]
        raise MaskInputError(
            f"{where}: a contour lies outside series {volume.series_instance_uid} (slice "
            f"{k_index} of {mask.shape[2]}"
            + (f", drawn on image {refs[0]}" if refs else "")
            + "); the RTSTRUCT's image references are broken or it belongs to another series"
        )
    mask[:, :, k_index] ^= rasterise_polygon(voxels[:, 0], voxels[:, 1], mask.shape[:2])


def contour_points(contour: Dataset, where: str) -> np.ndarray:
    """ContourData as an (n, 3) array, parsed from the raw bytes when still raw.

    Building one pydicom DS object per coordinate dominates reading time otherwise.
    """
    element = contour.get_item(_CONTOUR_DATA)
    if element is None:
        raise MaskInputError(f"{where}: a contour has no ContourData")
    raw = element.value
    if isinstance(raw, bytes):
        text = raw.decode("ascii").strip("\x00 ")
        values = np.array(text.split("\\"), dtype=np.float64) if text else np.zeros(0)
    else:
        values = np.asarray(contour.ContourData, dtype=np.float64)
    if values.size % 3:
        raise MaskInputError(
            f"{where}: ContourData holds {values.size} numbers, not a multiple of 3"
        )
    return values.reshape(-1, 3)


def rasterise_polygon(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels ``[i, j]`` whose centre ``(i, j)`` is inside the closed polygon ``(x, y)``.

    Even-odd rule, crossing test as in PNPOLY: a centre exactly on a left edge is inside, on a
    right edge outside, so two polygons sharing an edge never both claim a pixel.
    """
    out = np.zeros(shape, dtype=bool)
    x0, y0 = x, y
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    rows = np.arange(max(0, int(np.ceil(y.min()))), min(shape[1], int(np.floor(y.max())) + 1))
    columns = np.arange(shape[0])
    for j in rows:
        crossing = (y0 > j) != (y1 > j)
        if not np.any(crossing):
            continue
        xa, ya, xb, yb = x0[crossing], y0[crossing], x1[crossing], y1[crossing]
        xc = np.sort(xa + (j - ya) * (xb - xa) / (yb - ya))
        right = xc.size - np.searchsorted(xc, columns, side="right")
        out[:, j] = (right % 2) == 1
    return out
