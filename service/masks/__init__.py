"""Mask readers: DICOM-SEG, RTSTRUCT and NIfTI label maps → :class:`RegionSet` on an image grid."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels.registry import LabelTable
from service.library_logging import library_message
from service.masks.nifti_reader import read_nifti_labels
from service.masks.rtstruct_reader import RTSTRUCT_SOP_CLASS, read_rtstruct
from service.masks.seg_reader import SEG_SOP_CLASSES, read_seg
from service.regions import Region, RegionSet

__all__ = ["Region", "RegionSet", "load_regions", "mask_kind"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def mask_kind(path: Path) -> str:
    """``"nifti"``, ``"seg"`` or ``"rtstruct"``, judged by name (NIfTI) or by DICOM header.

    Raises
    ------
    MaskInputError
        If the file is none of these.
    """
    if path.name.lower().endswith(_NIFTI_SUFFIXES):
        return "nifti"
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError) as exc:
        raise MaskInputError(
            f"{path}: neither NIfTI (.nii, .nii.gz) nor a readable DICOM file: "
            f"{library_message(exc)}"
        ) from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class in SEG_SOP_CLASSES or modality == "SEG":
        return "seg"
    if sop_class == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return "rtstruct"
    raise MaskInputError(
        f"{path}: a DICOM {modality or 'object'} is not a mask; pass a DICOM-SEG, an RTSTRUCT "
        "or a NIfTI label map"
    )


def _resolve(path: Path) -> Path:
    """A mask file: ``path`` itself, or the one SEG/RTSTRUCT/NIfTI file in a folder."""
    if path.is_file():
        return path
    if not path.exists():
        raise MaskInputError(f"{path}: no such mask file")
    candidates = []
    for child in sorted(p for p in path.iterdir() if p.is_file()):
        try:
            mask_kind(child)
        except MaskInputError:
            continue
        candidates.append(child)
    if len(candidates) != 1:
        raise MaskInputError(
            f"{path}: expected one SEG, RTSTRUCT or NIfTI mask in the folder, "
            f"found {len(candidates)}; pass the file itself"
        )
    return candidates[0]


def load_regions(path: Path, volume: Volume, table: LabelTable | None = None) -> RegionSet:
    """Read any supported mask at ``path`` as regions on ``volume``'s grid.

    Parameters
    ----------
    path
        A DICOM-SEG or RTSTRUCT file, a NIfTI label map (``.nii``/``.nii.gz``), or a folder
        holding exactly one of these.
    volume
        The image the mask belongs to; regions come back on its grid.
    table
        Label table that names NIfTI label values and attaches codes to SEG/RTSTRUCT names.

    Raises
    ------
    MaskInputError
        If the mask cannot be read or does not fit the image.
    """
    path = _resolve(Path(path))
    kind = mask_kind(path)
    if kind == "nifti":
        return read_nifti_labels(path, volume, table)
    if kind == "seg":
        return read_seg(path, volume, table)
    return read_rtstruct(path, volume, table)
