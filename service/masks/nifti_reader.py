"""NIfTI label maps → regions on an image grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.imaging.resample import Grid, resample_labels
from service.labels.registry import LabelTable
from service.masks.alignment import index_map, place
from service.nifti import read_nifti
from service.regions import RegionSet

logger = logging.getLogger(__name__)

_ALIGN_TOLERANCE = 0.01  # voxels: NIfTI writers round affines to float32


def read_nifti_labels(path: Path, volume: Volume, table: LabelTable | None = None) -> RegionSet:
    """Read a NIfTI label map onto ``volume``'s grid: one region per non-zero label value.

    A map on the same lattice (also cropped, transposed or flipped) is copied voxel by voxel;
    any other grid is resampled by nearest neighbour, with a warning.

    Raises
    ------
    MaskInputError
        If the file is unreadable, holds non-integer labels, or does not overlap the image.
    """
    array, affine = read_nifti(path)
    array = np.squeeze(array)
    if array.ndim != 3:
        raise MaskInputError(f"{path}: expected a 3-D label map, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating) and np.any(array != np.round(array)):
        raise MaskInputError(f"{path}: label values must be integers (is this an image?)")
    array = array.astype(np.int32)
    warnings: list[str] = []
    mapping = index_map(affine, volume.affine, _ALIGN_TOLERANCE)
    if mapping is not None:
        labels, lost = place(array, mapping, volume.shape)
        if lost:
            warnings.append(f"{lost} labelled voxels lie outside the image and were dropped")
    else:
        warnings.append("label map is on another grid; resampled by nearest neighbour")
        labels = resample_labels(
            array,
            Grid(array.shape, affine),
            Grid(volume.shape, volume.affine),
        )
    if array.any() and not labels.any():
        raise MaskInputError(
            f"{path}: the label map does not overlap series {volume.series_instance_uid}; "
            "check that it belongs to this image"
        )
    for warning in warnings:
        logger.warning("%s: %s", path.name, warning)
    regions = RegionSet.from_label_map(labels, volume.affine, table, source=str(path))
    regions.warnings.extend(warnings)
    return regions
