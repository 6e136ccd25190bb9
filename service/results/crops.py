"""Regions as bounding-box crops, made one at a time, for the writers.

A full-size boolean mask per structure costs the volume's voxel count in bytes each (nine
organs of a 512×512×300 CT: 700 MB). The writers only need each region's bounding box, so they
take a label map (or a region set) and see one cropped mask at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from service.dicom.volume import Volume
from service.errors import DicomInputError
from service.labels.registry import LabelEntry, LabelTable
from service.regions import RegionSet, label_entry
from service.results.provenance import as_region_set

_SLAB_VOXELS = 1 << 22  # 32 MB of int64 counts' input per bincount call


@dataclass(frozen=True)
class RegionCrop:
    """One non-empty region: its mask inside its bounding box, which starts at ``offset``."""

    name: str
    number: int
    code: LabelEntry | None
    offset: tuple[int, int, int]
    mask: np.ndarray  # bool [i, j, k] of the bounding box, C-contiguous

    @property
    def box(self) -> tuple[slice, slice, slice]:
        """Slices of the bounding box in the full grid."""
        return (
            slice(self.offset[0], self.offset[0] + self.mask.shape[0]),
            slice(self.offset[1], self.offset[1] + self.mask.shape[1]),
            slice(self.offset[2], self.offset[2] + self.mask.shape[2]),
        )


def crop_mask(mask: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """The bounding box offset and a contiguous copy of the non-empty part; None when empty."""
    k_any: np.ndarray = np.asarray(mask.any(axis=(0, 1)))
    if not k_any.any():
        return None
    i_any: np.ndarray = np.asarray(mask.reshape(mask.shape[0], -1).any(axis=1))
    j_any: np.ndarray = np.asarray(mask.any(axis=(0, 2)))
    (i0, i1), (j0, j1), (k0, k1) = (
        (int(np.argmax(a)), len(a) - int(np.argmax(a[::-1]))) for a in (i_any, j_any, k_any)
    )
    return (i0, j0, k0), np.ascontiguousarray(mask[i0:i1, j0:j1, k0:k1], dtype=bool)


def _label_values(labels: np.ndarray) -> list[int]:
    """Non-zero values of an unsigned label map, counted a slab at a time (bincount widens)."""
    present = np.zeros(1, dtype=bool)
    for slab in np.array_split(labels, max(1, labels.size // _SLAB_VOXELS), axis=0):
        counts = np.bincount(slab.ravel())
        if len(counts) > len(present):
            present = np.pad(present, (0, len(counts) - len(present)))
        present[: len(counts)] |= counts > 0
    return [int(v) for v in np.flatnonzero(present) if v != 0]


#: What the writers accept: a region set, a label map, or crops already made from either.
Labels = RegionSet | np.ndarray | Sequence[RegionCrop]


def region_crops(labels: Labels, volume: Volume, table: LabelTable | None) -> Iterator[RegionCrop]:
    """Crops of the non-empty regions of a label map or region set on ``volume``'s grid.

    A label map of unsigned integers is cut one value at a time, so only one full-size mask
    exists at once; other inputs go through :func:`~service.results.provenance.as_region_set`
    (same names, codes and checks as there). Crops are passed on as they are.

    Raises
    ------
    DicomInputError
        If the labels are not on the volume's grid.
    MaskInputError
        If a label value is not in ``table``.
    """
    if not isinstance(labels, (RegionSet, np.ndarray)):
        yield from labels
        return
    if not isinstance(labels, np.ndarray) or labels.dtype.kind != "u":
        for region in as_region_set(labels, volume, table).regions:
            cropped = crop_mask(region.mask)
            if cropped is not None:
                yield RegionCrop(region.name, region.number, region.code, *cropped)
        return
    if labels.shape != volume.shape:
        raise DicomInputError(
            f"label map shape {labels.shape} differs from series "
            f"{volume.series_instance_uid} shape {volume.shape}"
        )
    for value in _label_values(labels):
        entry = label_entry(table, value)
        cropped = crop_mask(labels == value)
        if cropped is not None:
            yield RegionCrop(entry.name if entry else f"label_{value}", value, entry, *cropped)
