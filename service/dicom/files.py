"""Find DICOM files and read their headers, with errors that name the file."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError

from service.errors import DicomInputError
from service.library_logging import library_message

logger = logging.getLogger(__name__)

# Files that are never DICOM; skipping them by name avoids parsing large NIfTI or archive files.
_NOT_DICOM_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".json", ".csv", ".txt", ".md", ".png", ".jpg")


@dataclass(frozen=True)
class DicomFile:
    """A parsed DICOM header (pixel data not yet read) and where it came from."""

    path: Path
    dataset: Dataset


@dataclass
class ScanResult:
    """The DICOM headers found under some paths, and the files that were not DICOM."""

    files: list[DicomFile] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def iter_candidate_files(paths: Iterable[Path]) -> Iterable[Path]:
    """Yield regular files under ``paths`` (recursively, sorted, hidden files excluded)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(p.startswith(".") for p in child.parts[-1:]):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise DicomInputError(f"{path}: no such file or directory")


def read_header(path: Path) -> FileDataset:
    """Read one file's header without pixel data.

    Raises
    ------
    DicomInputError
        If the file is not DICOM or its header cannot be parsed.
    """
    try:
        return _read_converted(path)
    except InvalidDicomError as exc:
        message = library_message(exc)
        raise DicomInputError(f"{path}: not a DICOM file ({message})") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        message = library_message(exc)
        raise DicomInputError(f"{path}: DICOM header could not be parsed: {message}") from exc


# Bulk values left raw by the header check: RTSTRUCT ContourData can hold millions of numbers,
# whose conversion to DS objects took most of a scan; the RTSTRUCT reader parses it itself.
_BULK_TAGS = frozenset({0x30060050})


def _convert(dataset: Dataset) -> None:
    for tag in list(dataset.keys()):
        if tag in _BULK_TAGS:
            continue
        element = dataset[tag]
        if element.VR == "SQ":
            for item in element.value:
                _convert(item)


def _read_converted(path: Path) -> FileDataset:
    # pydicom converts values lazily, so a damaged value would raise wherever it is first
    # used; converting every value now (bulk contour data aside) raises where the error
    # names the file.
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    _convert(dataset)
    return dataset


def read_full(path: Path) -> FileDataset:
    """Read one file including its pixel data (decoded later, on access)."""
    try:
        return pydicom.dcmread(path)
    except Exception as exc:
        message = library_message(exc)
        raise DicomInputError(f"{path}: DICOM file could not be read: {message}") from exc


def scan(paths: Sequence[Path | str]) -> ScanResult:
    """Read the headers of every DICOM file under ``paths``.

    Files given explicitly must be DICOM. Inside directories, files that are not DICOM (licences,
    NIfTI, JSON) are skipped and listed in :attr:`ScanResult.skipped`; a file that *is* DICOM but
    cannot be parsed is an error, because a series missing it would be silently incomplete.
    """
    result = ScanResult()
    explicit = {Path(p) for p in paths if Path(p).is_file()}
    for path in iter_candidate_files(Path(p) for p in paths):
        if path not in explicit and path.name.lower().endswith(_NOT_DICOM_SUFFIXES):
            result.skipped.append(path)
            continue
        try:
            dataset = _read_converted(path)
        except InvalidDicomError as exc:
            if path in explicit:
                message = library_message(exc)
                raise DicomInputError(f"{path}: not a DICOM file ({message})") from exc
            result.skipped.append(path)
            continue
        except Exception as exc:
            message = library_message(exc)
            raise DicomInputError(f"{path}: DICOM header could not be parsed: {message}") from exc
        result.files.append(DicomFile(path=path, dataset=dataset))
    logger.debug("scanned %d DICOM files, skipped %d", len(result.files), len(result.skipped))
    return result
