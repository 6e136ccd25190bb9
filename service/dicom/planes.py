"""Image planes: one entry per 2D image, whether it came from a single- or multi-frame file.

Everything after this module (stacking, ordering, geometry) works on :class:`Plane` objects, so
classic per-slice series and enhanced multi-frame CT/MR/PET share one code path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.dicom.files import DicomFile
from service.errors import DicomGeometryError, DicomInputError, FedsegError
from service.library_logging import library_message

#: Modalities of objects that hold no image volume (results, documents, presentation states).
NON_IMAGE_MODALITIES = frozenset(
    {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "RWV", "DOC", "PLAN"}
)
#: Modalities for which a missing plane geometry is an error rather than a skipped object.
VOLUME_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "RTDOSE"})


@dataclass(frozen=True)
class Plane:
    """One 2D image plane and everything needed to place it in patient space."""

    path: Path
    frame_index: int | None  # 0-based frame of a multi-frame file; None for single-frame files
    dataset: Dataset  # the file's header (pixel data not loaded)
    sop_instance_uid: str
    series_instance_uid: str
    modality: str
    position: np.ndarray  # ImagePositionPatient, mm (LPS)
    orientation: np.ndarray  # ImageOrientationPatient: row cosine (3), column cosine (3)
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    slice_thickness: float | None
    rescale_slope: float
    rescale_intercept: float
    split_keys: dict[str, Any] = field(default_factory=dict)  # attributes that tell stacks apart
    instance_number: int = 0
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A plane that exists can be decoded and placed: damaged headers stop here, not as
        # NaN voxels or a huge allocation later.
        if self.rows <= 0 or self.columns <= 0:
            raise DicomGeometryError(f"{self.label}: image is {self.rows}x{self.columns} pixels")
        if not all(np.isfinite(v) and v > 0 for v in self.pixel_spacing):
            raise DicomGeometryError(f"{self.label}: PixelSpacing {self.pixel_spacing} invalid")
        if not (np.isfinite(self.rescale_slope) and np.isfinite(self.rescale_intercept)):
            raise DicomInputError(
                f"{self.label}: RescaleSlope/Intercept {self.rescale_slope}/"
                f"{self.rescale_intercept} not finite"
            )

    @property
    def label(self) -> str:
        """Human-readable name of the plane for error messages (no PHI)."""
        return (
            str(self.path)
            if self.frame_index is None
            else f"{self.path} frame {self.frame_index + 1}"
        )

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of the plane (row cosine × column cosine)."""
        n = np.cross(self.orientation[:3], self.orientation[3:])
        return n / np.linalg.norm(n)


@dataclass
class PlaneSet:
    """Planes found in a set of files, plus objects that are not image volumes."""

    planes: list[Plane] = field(default_factory=list)
    non_image: list[DicomFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _float_list(value: Any, count: int, name: str, where: str) -> np.ndarray:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DicomGeometryError(f"{where}: {name} is not numeric ({value!r})") from exc
    if arr.shape != (count,):
        raise DicomGeometryError(f"{where}: {name} must have {count} values, has {arr.size}")
    if not np.isfinite(arr).all():
        raise DicomGeometryError(f"{where}: {name} is not finite ({value!r})")
    return arr


def _first_item(ds: Dataset | None, keyword: str) -> Dataset | None:
    if ds is None or keyword not in ds or len(ds[keyword].value) == 0:
        return None
    item: Dataset = ds[keyword].value[0]
    return item


def _functional(per_frame: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """Look up a functional group macro, per-frame first, then shared."""
    return _first_item(per_frame, keyword) or _first_item(shared, keyword)


def _uid(value: object) -> str:
    return str(value).strip() if value is not None else ""


def derived_series_uid(ds: Dataset) -> str:
    """A stable SeriesInstanceUID for a series whose UID is blank, from attributes it does have."""
    sources = [
        _uid(ds.get("StudyInstanceUID")),
        str(ds.get("SeriesNumber", "")),
        str(ds.get("Modality", "")),
        _uid(ds.get("FrameOfReferenceUID")),
        str(ds.get("SeriesDescription", "")),
        str(ds.get("SeriesDate", "")) + str(ds.get("SeriesTime", "")),
        str(ds.get("Rows", "")) + "x" + str(ds.get("Columns", "")),
    ]
    return str(generate_uid(entropy_srcs=sources))


def _identity(dicom_file: DicomFile) -> tuple[str, str, list[str]]:
    ds, path = dicom_file.dataset, dicom_file.path
    warnings: list[str] = []
    sop_uid = _uid(ds.get("SOPInstanceUID"))
    if not sop_uid:
        meta = getattr(ds, "file_meta", None)
        sop_uid = _uid(meta.get("MediaStorageSOPInstanceUID")) if meta is not None else ""
        if not sop_uid:
            raise DicomGeometryError(
                f"{path}: SOPInstanceUID is blank in the dataset and in the file meta; "
                "the instance cannot be referenced by results"
            )
        warnings.append("SOPInstanceUID blank in dataset; taken from file meta")
    series_uid = _uid(ds.get("SeriesInstanceUID"))
    if not series_uid:
        series_uid = derived_series_uid(ds)
        warnings.append("SeriesInstanceUID blank; derived a stable UID from series attributes")
    _repair_identity(ds, sop_uid, series_uid)
    return sop_uid, series_uid, warnings


def derived_study_uid(ds: Dataset) -> str:
    """A stable StudyInstanceUID for a study whose UID is blank, from attributes it does have."""
    sources = [
        "study",
        str(ds.get("PatientID", "")),
        str(ds.get("StudyDate", "")) + str(ds.get("StudyTime", "")),
        str(ds.get("AccessionNumber", "")),
        str(ds.get("StudyID", "")),
        _uid(ds.get("FrameOfReferenceUID")),
    ]
    return str(generate_uid(entropy_srcs=sources))


def _repair_identity(ds: Dataset, sop_uid: str, series_uid: str) -> None:
    """Write the UIDs the reader uses into a header whose own are blank.

    Results copy and reference the source headers (highdicom reads their SOP Class, SOP Instance
    and Study UIDs), so a de-identified series with blank UIDs must carry the ones reported.
    """
    if not _uid(ds.get("SOPInstanceUID")):
        ds.SOPInstanceUID = sop_uid
    if not _uid(ds.get("SOPClassUID")):
        meta = getattr(ds, "file_meta", None)
        sop_class = _uid(meta.get("MediaStorageSOPClassUID")) if meta is not None else ""
        if sop_class:
            ds.SOPClassUID = sop_class
    if not _uid(ds.get("SeriesInstanceUID")):
        ds.SeriesInstanceUID = series_uid
    if not _uid(ds.get("StudyInstanceUID")):
        ds.StudyInstanceUID = derived_study_uid(ds)


def _split_keys(ds: Dataset, frame_content: Dataset | None) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "EchoNumbers": ds.get("EchoNumbers"),
        "TemporalPositionIdentifier": ds.get("TemporalPositionIdentifier"),
        "AcquisitionNumber": ds.get("AcquisitionNumber"),
        "TriggerTime": ds.get("TriggerTime"),
        "ImageType": tuple(ds.get("ImageType", ())),
    }
    if frame_content is not None:
        keys["StackID"] = frame_content.get("StackID")
        keys["TemporalPositionIndex"] = frame_content.get("TemporalPositionIndex")
    return {k: (str(v) if isinstance(v, float | int) else v) for k, v in keys.items()}


def _single_frame_plane(dicom_file: DicomFile) -> Plane:
    ds, path = dicom_file.dataset, dicom_file.path
    where = str(path)
    sop_uid, series_uid, warnings = _identity(dicom_file)
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        raise DicomGeometryError(
            f"{where}: ImagePositionPatient/ImageOrientationPatient missing; "
            "the image cannot be placed in patient space"
        )
    spacing = _float_list(ds.get("PixelSpacing"), 2, "PixelSpacing", where)
    return Plane(
        path=path,
        frame_index=None,
        dataset=ds,
        sop_instance_uid=sop_uid,
        series_instance_uid=series_uid,
        modality=str(ds.get("Modality", "")),
        position=_float_list(ds.ImagePositionPatient, 3, "ImagePositionPatient", where),
        orientation=_float_list(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", where),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        slice_thickness=float(ds.SliceThickness) if ds.get("SliceThickness") else None,
        rescale_slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
        rescale_intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        split_keys=_split_keys(ds, None),
        instance_number=int(ds.get("InstanceNumber", 0) or 0),
        warnings=tuple(warnings),
    )


def _multi_frame_planes(dicom_file: DicomFile) -> list[Plane]:
    ds, path = dicom_file.dataset, dicom_file.path
    sop_uid, series_uid, warnings = _identity(dicom_file)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    per_frame_seq: Sequence[Dataset] = ds.get("PerFrameFunctionalGroupsSequence", [])
    n_frames = int(ds.get("NumberOfFrames", 1))
    if len(per_frame_seq) != n_frames:
        raise DicomGeometryError(
            f"{path}: PerFrameFunctionalGroupsSequence has {len(per_frame_seq)} items "
            f"but NumberOfFrames is {n_frames}"
        )
    planes = []
    for index, per_frame in enumerate(per_frame_seq):
        where = f"{path} frame {index + 1}"
        position = _functional(per_frame, shared, "PlanePositionSequence")
        orientation = _functional(per_frame, shared, "PlaneOrientationSequence")
        measures = _functional(per_frame, shared, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise DicomGeometryError(
                f"{where}: plane position, orientation or pixel measures functional group missing"
            )
        transform = _functional(per_frame, shared, "PixelValueTransformationSequence")
        content = _functional(per_frame, shared, "FrameContentSequence")
        spacing = _float_list(measures.get("PixelSpacing"), 2, "PixelSpacing", where)
        thickness = measures.get("SliceThickness")
        planes.append(
            Plane(
                path=path,
                frame_index=index,
                dataset=ds,
                sop_instance_uid=sop_uid,
                series_instance_uid=series_uid,
                modality=str(ds.get("Modality", "")),
                position=_float_list(
                    position.ImagePositionPatient, 3, "ImagePositionPatient", where
                ),
                orientation=_float_list(
                    orientation.ImageOrientationPatient, 6, "ImageOrientationPatient", where
                ),
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                pixel_spacing=(float(spacing[0]), float(spacing[1])),
                slice_thickness=float(thickness) if thickness else None,
                rescale_slope=float(transform.get("RescaleSlope", 1.0)) if transform else 1.0,
                rescale_intercept=float(transform.get("RescaleIntercept", 0.0))
                if transform
                else 0.0,
                split_keys=_split_keys(ds, content),
                instance_number=index + 1,
                warnings=tuple(warnings),
            )
        )
    return planes


def is_multi_frame(ds: Dataset) -> bool:
    """Whether a header describes an enhanced multi-frame image with functional groups."""
    return "PerFrameFunctionalGroupsSequence" in ds


def collect_planes(files: Iterable[DicomFile]) -> PlaneSet:
    """Turn DICOM headers into image planes, setting aside objects that are not images."""
    result = PlaneSet()
    for dicom_file in files:
        try:
            _collect_file(dicom_file, result)
        except FedsegError:
            raise
        except Exception as exc:  # pydicom converts values lazily; a damaged one raises anything
            raise DicomInputError(
                f"{dicom_file.path}: a header value could not be interpreted "
                f"({library_message(exc)}); "
                "re-export the series from its source"
            ) from exc
    return result


def _collect_file(dicom_file: DicomFile, result: PlaneSet) -> None:
    ds = dicom_file.dataset
    modality = str(ds.get("Modality", ""))
    if modality in NON_IMAGE_MODALITIES or not _has_pixels(ds):
        result.non_image.append(dicom_file)
        return
    if is_multi_frame(ds):
        result.planes.extend(_multi_frame_planes(dicom_file))
    elif "ImagePositionPatient" in ds or modality in VOLUME_MODALITIES:
        result.planes.append(_single_frame_plane(dicom_file))
    else:
        result.non_image.append(dicom_file)
        result.warnings.append(f"{dicom_file.path}: {modality} image without geometry skipped")


def _has_pixels(ds: Dataset) -> bool:
    # Headers are read with stop_before_pixels, so PixelData is absent; Rows tells an image.
    return "Rows" in ds and "Columns" in ds
