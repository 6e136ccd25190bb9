"""What every derived object fedseg writes shares: the algorithm, the source series and UIDs."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from service.dicom.volume import Volume
from service.errors import DicomInputError
from service.labels.registry import LabelTable
from service.regions import Region, RegionSet

MANUFACTURER = "fedseg"


def software_version() -> str:
    """The installed fedseg version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return version("fedseg")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class AlgorithmIdentity:
    """The model (or tool) that made a segmentation, and its intended use when it has one."""

    name: str
    version: str
    intended_use: str = ""  # the manifest's intended-use summary (service.qc.intended_use)
    research_only: bool = False

    def series_description(self, default: str) -> str:
        """Model, version and, while research only, ``RESEARCH USE ONLY``; else ``default``."""
        if not self.intended_use:
            return default
        suffix = " RESEARCH USE ONLY" if self.research_only else ""
        return f"{self.name} {self.version}{suffix}"[:64]

    def __post_init__(self) -> None:
        if not self.name.strip() or not self.version.strip():
            raise ValueError("an algorithm needs a non-empty name and version")
        if len(self.name) > 64 or len(self.version) > 64:
            raise ValueError("algorithm name and version must fit 64 characters (DICOM LO)")


@dataclass(frozen=True)
class DerivedSeries:
    """Series attributes of a new derived object (UIDs are generated when not given)."""

    series_number: int = 900
    series_description: str = ""
    instance_number: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.series_number < 2**31:
            raise ValueError(f"series number {self.series_number} is not a positive IS value")


def require_source_grid(volume: Volume, what: str) -> None:
    """Refuse to write ``what`` for a volume that was resampled away from its source planes.

    Raises
    ------
    DicomInputError
        If ``volume.on_source_grid`` is false or it has no source headers.
    """
    if not volume.on_source_grid or len(volume.headers) != volume.shape[2]:
        raise DicomInputError(
            f"series {volume.series_instance_uid}: cannot write {what} because the volume was "
            "resampled (gantry tilt or uneven spacing), so its planes are not the source images; "
            "resample the labels back onto the source planes or use --formats json"
        )


def as_region_set(
    labels: RegionSet | np.ndarray, volume: Volume, table: LabelTable | None
) -> RegionSet:
    """Regions from a region set or a label map on ``volume``'s grid, codes filled from ``table``.

    Raises
    ------
    DicomInputError
        If the regions are not on the volume's grid.
    """
    if isinstance(labels, np.ndarray):
        if labels.shape != volume.shape:
            raise DicomInputError(
                f"label map shape {labels.shape} differs from series "
                f"{volume.series_instance_uid} shape {volume.shape}"
            )
        return RegionSet.from_label_map(labels, volume.affine, table)
    if labels.shape != volume.shape or not np.allclose(labels.affine, volume.affine, atol=1e-3):
        raise DicomInputError(
            f"regions on grid {labels.shape} do not lie on series {volume.series_instance_uid} "
            f"grid {volume.shape}; read the mask onto this image first"
        )
    if table is None:
        return labels
    regions = [
        Region(r.name, r.number, r.mask, r.code or table.find(r.name)) for r in labels.regions
    ]
    return RegionSet(
        regions,
        labels.shape,
        labels.affine,
        labels.source,
        list(labels.warnings),
        dict(labels.refused),
    )


_MAX_LENGTH = {"SH": 16, "LO": 64, "CS": 16, "AE": 16, "PN": 64 * 5}


def clip_copied_values(ds: Dataset, keywords: tuple[str, ...]) -> list[str]:
    """Cut copied source values that break their VR's maximum length (e.g. a long StudyID).

    Sources sometimes carry such values; copying them verbatim would make the derived object
    invalid. Returns the keywords that were cut.
    """
    cut = []
    for keyword in keywords:
        if keyword not in ds:
            continue
        element = ds[keyword]
        if element.VR not in _MAX_LENGTH or element.VM != 1:
            continue
        value = str(element.value)
        if len(value) > _MAX_LENGTH[element.VR]:
            # A new element: the copied one may still belong to the source's header.
            ds[keyword] = DataElement(element.tag, element.VR, value[: _MAX_LENGTH[element.VR]])
            cut.append(keyword)
    return cut


STUDY_KEYWORDS = (
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "PatientID",
    "ReferringPhysicianName",
    "PatientName",
)


def frame_of_reference_uid(volume: Volume) -> str:
    """The source's FrameOfReferenceUID, or one derived from its series UID when it has none.

    The derivation is deterministic, so every object fedseg writes for such a series agrees.
    """
    return series_frame_of_reference_uid(volume.frame_of_reference_uid, volume.series_instance_uid)


def series_frame_of_reference_uid(frame_of_reference_uid: str, series_instance_uid: str) -> str:
    """``frame_of_reference_uid``, or the one derived from the series UID when it is empty."""
    if frame_of_reference_uid:
        return frame_of_reference_uid
    return str(generate_uid(entropy_srcs=["fedseg frame of reference", series_instance_uid]))
