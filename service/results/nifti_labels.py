"""A label map as NIfTI in fedseg's axis convention, with a JSON sidecar naming its values.

The array is ``[i, j, k]`` as :class:`~service.dicom.volume.Volume` holds it (``i`` along the DICOM
row cosine, ``j`` along the column cosine, ``k`` along the stack) and the NIfTI affine is that
volume's, converted to RAS, so any NIfTI viewer shows it on the image. The sidecar
(``<name>.json``) says what each value means; NIfTI itself cannot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels.registry import LabelEntry, LabelTable
from service.nifti import write_nifti
from service.regions import RegionSet, label_entry

AXES = (
    "array [i, j, k]: i along the DICOM row direction (column index), j along the column "
    "direction (row index), k along the slices; the NIfTI affine maps it to RAS mm"
)


@dataclass(frozen=True)
class LabelName:
    """What one value of a label map stands for."""

    name: str
    entry: LabelEntry | None = None

    def as_dict(self) -> dict[str, str]:
        """JSON form: the name, and the label-table entry's names and codes when known."""
        out = {"name": self.name}
        if self.entry is not None:
            out |= {"label": self.entry.name, "display_name": self.entry.display_name}
            if self.entry.tg263_name:
                out["tg263_name"] = self.entry.tg263_name
            out["snomed_ct"] = f"{self.entry.type.code} ({self.entry.type.meaning})"
        return out


def sidecar_path(nifti: Path) -> Path:
    """``labels.nii.gz`` → ``labels.json``."""
    name = nifti.name.removesuffix(".gz").removesuffix(".nii")
    return nifti.with_name(f"{name}.json")


def write_label_nifti(
    path: Path,
    labels: np.ndarray,
    affine: np.ndarray,
    names: Mapping[int, LabelName],
    extra: Mapping[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write ``labels`` and its sidecar; returns both paths.

    Raises
    ------
    MaskInputError
        If the map holds a value that ``names`` does not name.
    """
    present = {int(v) for v in np.unique(labels) if v != 0}
    unnamed = sorted(present - set(names))
    if unnamed:
        raise MaskInputError(f"{path.name}: label values {unnamed} have no name")
    write_nifti(path, labels, affine)
    sidecar = {
        "axes": AXES,
        "labels": {str(v): names[v].as_dict() for v in sorted(names)},
        **(extra or {}),
    }
    side = sidecar_path(path)
    side.write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path, side


def region_label_map(regions: RegionSet) -> tuple[np.ndarray, dict[int, LabelName]]:
    """A region set as one label map: each region's number, named by its region name.

    Raises
    ------
    MaskInputError
        If regions overlap (one value per voxel cannot hold them: write a SEG instead).
    """
    numbers = [r.number for r in regions]
    dtype = np.uint8 if max(numbers, default=0) < 256 else np.uint16
    try:
        labels = regions.to_label_map(dtype)
    except MaskInputError as exc:
        raise MaskInputError(f"{exc}; write --formats seg to keep overlapping segments") from exc
    return labels, {r.number: LabelName(r.name, r.code) for r in regions}


def write_volume_labels(
    path: Path, labels: RegionSet | np.ndarray, volume: Volume, table: LabelTable | None
) -> tuple[Path, Path]:
    """Write a region set or a label map (values of ``table``) on ``volume``'s grid.

    Raises
    ------
    MaskInputError
        If regions overlap, the map is not on the volume's grid, or a value is not in ``table``.
    """
    if isinstance(labels, RegionSet):
        array, names = region_label_map(labels)
    else:
        if labels.shape != volume.shape:
            raise MaskInputError(
                f"label map shape {labels.shape} differs from series shape {volume.shape}"
            )
        array = labels
        names = {}
        for value in (int(v) for v in np.unique(labels) if v != 0):
            entry = label_entry(table, value)
            names[value] = LabelName(entry.name if entry else f"label_{value}", entry)
    extra = {"task": table.task} if table is not None else {}
    return write_label_nifti(path, array, volume.affine, names, extra)
