"""Whole-body context for ``pet-lesion``: hard-negative crops of a whole-body FDG PET.

The sts-pet cases are 5 cm crops around a sarcoma, so a network trained on them alone never sees
brain, heart, kidneys or bladder, which take up FDG physiologically, and labels them as tumour
on a whole-body scan. This module reads the one whole-body PET of the shared data (``sts001-raw``,
patient STS_001: raw GE activity, converted to SUVbw by the service, with its planner's RTSTRUCT)
and cuts crops centred on hot voxels away from the tumour, and on random body voxels. The crops
keep their true labels (a crop that reaches the tumour keeps its tumour voxels).

The patient of that scan (``WHOLE_BODY_PATIENT``) must then never be a test or validation patient:
:func:`training.experiments.pet_lesion.split` keeps it in the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from service.dicom.volume import read_volume
from service.imaging.resample import Grid
from service.masks import load_regions
from service.pet.suv import to_suv
from training.data.cases import Case
from training.data.preprocess import Prepared

#: The sts-pet patient whose whole-body PET ``sts001-raw`` holds.
WHOLE_BODY_PATIENT = "STS_001"
#: RTSTRUCT ROI of the planner's tumour on the whole-body PET.
TUMOUR_ROI = "GTV_Mass"


@dataclass(frozen=True)
class NegativeSampling:
    """How many crops to cut, how big, and what counts as "hot".

    Parameters
    ----------
    hot
        Crops centred on voxels with SUV ≥ ``hot_suv`` that lie more than ``clearance_mm`` from
        the tumour; one connected hot region of at least ``min_hot_ml`` is drawn at random (so
        the bladder does not win by size, and noise specks do not win by number), then a voxel
        inside it.
    body
        Crops centred on random voxels with SUV ≥ ``body_suv`` more than ``clearance_mm`` from
        the tumour (soft tissue, arms, the ends of the axial field of view).
    size
        Crop edge in voxels of the task grid; a little larger than the patch so that the random
        patch taken from it still covers the centre.
    """

    hot: int = 10
    body: int = 4
    size: int = 40
    hot_suv: float = 2.5
    body_suv: float = 0.5
    clearance_mm: float = 40.0
    min_hot_ml: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hot < 0 or self.body < 0 or self.size < 1:
            raise ValueError("crop counts must be ≥ 0 and the crop size positive")
        if self.hot_suv <= 0 or self.body_suv <= 0 or self.clearance_mm < 0 or self.min_hot_ml < 0:
            raise ValueError("SUV levels must be positive and the clearance ≥ 0")


def load_whole_body_pet(folder: Path | str, site: str = "sts001-raw") -> Case:
    """The whole-body PET in SUVbw with its ``GTV_Mass`` as label 1.

    ``folder`` holds ``image/`` (the PET series) and ``mask/`` (its RTSTRUCT), as
    ``sts001-raw/FDG_PET`` does.
    """
    folder = Path(folder)
    volume = read_volume(folder / "image", modality="PT")
    suv, _ = to_suv(volume)
    regions = load_regions(folder / "mask", volume)
    labels = regions.get(TUMOUR_ROI).mask.astype(np.int16)
    return Case(
        f"{WHOLE_BODY_PATIENT}-wholebody", site, np.asarray(suv, np.float32), volume.affine, labels
    )


def _crop(prepared: Prepared, centre: np.ndarray, size: int) -> Prepared:
    assert prepared.labels is not None
    start = centre - size // 2
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, prepared.image.shape)
    region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    pad = [(int(a - s), int(s + size - b)) for s, a, b in zip(start, lo, hi, strict=True)]
    fill = float(prepared.image.min())
    image = np.pad(prepared.image[region], pad, constant_values=fill)
    labels = np.pad(prepared.labels[region], pad, constant_values=0)
    affine = prepared.grid.affine.copy()
    affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return Prepared(image.astype(np.float32), labels, Grid(shape=(size,) * 3, affine=affine))


def negative_crops(
    prepared: Prepared, suv: np.ndarray, sampling: NegativeSampling
) -> list[Prepared]:
    """Crops of a prepared whole-body case centred on hot non-tumour and on body voxels.

    ``suv`` is the whole-body SUV on the same (task) grid as ``prepared``.
    """
    if prepared.labels is None:
        raise ValueError("the whole-body case needs its tumour label")
    if suv.shape != prepared.image.shape:
        raise ValueError(f"SUV {suv.shape} and prepared image {prepared.image.shape} differ")
    rng = np.random.default_rng(sampling.seed)
    spacing = np.asarray(prepared.grid.spacing)
    far = ndimage.distance_transform_edt(prepared.labels == 0, sampling=spacing)
    clear = far > sampling.clearance_mm
    components, count = ndimage.label((suv >= sampling.hot_suv) & clear)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:] * voxel_ml
    regions = 1 + np.flatnonzero(sizes >= sampling.min_hot_ml)
    centres: list[np.ndarray] = []
    if len(regions):
        for _ in range(sampling.hot):
            voxels = np.argwhere(components == int(regions[int(rng.integers(len(regions)))]))
            centres.append(voxels[int(rng.integers(len(voxels)))])
    body = np.argwhere((suv >= sampling.body_suv) & clear)
    if len(body):
        centres += [body[int(rng.integers(len(body)))] for _ in range(sampling.body)]
    return [_crop(prepared, c, sampling.size) for c in centres]
