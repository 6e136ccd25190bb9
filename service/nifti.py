"""NIfTI images and label maps in fedseg's LPS convention.

NIfTI affines map voxels to RAS; fedseg affines map to DICOM's LPS. The two differ by negating
the first two patient axes, so the voxel array itself is stored unchanged.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from service.errors import MaskInputError

_RAS_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """Convert a voxel→RAS affine to voxel→LPS (the conversion is its own inverse)."""
    return _RAS_LPS @ affine


lps_to_ras = ras_to_lps


def read_nifti(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file; returns the voxel array ``(i, j, k[, ...])`` and its voxel→LPS affine.

    Raises
    ------
    MaskInputError
        If the file is missing or not a readable NIfTI image.
    """
    path = Path(path)
    try:
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)  # type: ignore[attr-defined]
        affine = image.affine  # type: ignore[attr-defined]
    except FileNotFoundError as exc:
        raise MaskInputError(f"{path}: no such NIfTI file") from exc
    except Exception as exc:  # nibabel raises several types for damaged files
        raise MaskInputError(f"{path}: not a readable NIfTI image: {exc}") from exc
    if array.ndim < 3:
        raise MaskInputError(f"{path}: NIfTI image has {array.ndim} dimensions, expected 3")
    return array, ras_to_lps(np.asarray(affine, dtype=np.float64))


def write_nifti(path: Path | str, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` with its voxel→LPS ``affine`` as NIfTI (``.nii`` or ``.nii.gz``)."""
    path = Path(path)
    image = nib.Nifti1Image(np.asarray(array), lps_to_ras(affine))
    image.set_qform(lps_to_ras(affine), code=1)
    image.set_sform(lps_to_ras(affine), code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path
