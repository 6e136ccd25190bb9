"""The PET part of a phantom: background uptake, uniform lesions and their SUV truth.

Lesions have uniform activity and are rasterised by voxel centre without partial-volume blur,
so with ``noise=0`` every lesion voxel holds exactly the lesion's SUV: SUVmax and SUVmean are
known analytically and the voxelised MTV is a voxel count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from service.dicom.image_writer import PetAcquisition
from training.phantoms.anatomy import PET_SUV, Anatomy
from training.phantoms.shapes import Ellipsoid, Grid, rasterise

_LESION_SITES = ("liver", "lung_left", "lung_right", "spleen")
_MAX_TRIES = 200


@dataclass(frozen=True)
class Lesion:
    """One FDG-avid lesion of uniform uptake."""

    shape: Ellipsoid
    suv: float
    organ: str


@dataclass(frozen=True)
class LesionTruth:
    """Analytic and voxelised measures of one lesion or of all lesions together."""

    suv_max: float
    suv_mean: float
    mtv_ml: float
    tlg: float
    voxels: int | None  # None for analytic values

    def describe(self) -> dict[str, float | int]:
        """Plain data for truth.json."""
        out: dict[str, float | int] = {
            "suv_max": self.suv_max,
            "suv_mean": self.suv_mean,
            "mtv_ml": self.mtv_ml,
            "tlg": self.tlg,
        }
        if self.voxels is not None:
            out["voxels"] = self.voxels
        return out


def draw_acquisition(rng: np.random.Generator, study_day: datetime) -> PetAcquisition:
    """Draw dose, uptake time, weight and height of one PET scan."""
    injection = study_day + timedelta(minutes=int(rng.integers(0, 180)))
    uptake = timedelta(seconds=int(rng.integers(50 * 60, 75 * 60)))
    weight = float(np.round(rng.uniform(52.0, 98.0), 1))
    return PetAcquisition(
        injected_dose_bq=float(np.round(rng.uniform(2.5e8, 4.2e8), -5)),
        injection_datetime=injection,
        series_datetime=injection + uptake,
        patient_weight_kg=weight,
        patient_height_m=float(np.round(rng.uniform(1.55, 1.92), 2)),
        patient_sex="M" if rng.uniform() < 0.5 else "F",
    )


def draw_lesions(
    rng: np.random.Generator, anatomy: Anatomy, grid: Grid, count: int
) -> tuple[Lesion, ...]:
    """Place ``count`` non-touching lesions inside organs, each at least a few voxels big."""
    voxel = float(np.cbrt(grid.voxel_volume_ml * 1000.0))
    sites = [s for s in _LESION_SITES if s in anatomy.organs]
    lesions: list[Lesion] = []
    for _ in range(_MAX_TRIES):
        if len(lesions) == count:
            break
        organ = sites[int(rng.integers(len(sites)))]
        host = anatomy.organs[organ]
        assert isinstance(host, Ellipsoid)
        offset = rng.uniform(-0.45, 0.45, 3) * np.asarray(host.radii)
        centre = np.asarray(host.centre) + offset
        radius = rng.uniform(max(7.0, 1.2 * voxel), max(18.0, 2.2 * voxel))
        radii = radius * rng.uniform(0.8, 1.2, 3)
        shape = Ellipsoid(
            (float(centre[0]), float(centre[1]), float(centre[2])),
            (float(radii[0]), float(radii[1]), float(radii[2])),
        )
        clear = all(
            np.linalg.norm(centre - np.asarray(o.shape.centre))
            > max(radii) + max(o.shape.radii) + 5
            for o in lesions
        )
        if clear and rasterise(shape, grid).any():
            suv = float(np.round(rng.uniform(4.0, 15.0), 2))
            lesions.append(Lesion(shape=shape, suv=suv, organ=organ))
    return tuple(lesions)


def render_pet(
    tissue: np.ndarray,
    lesions: tuple[Lesion, ...],
    grid: Grid,
    acquisition: PetAcquisition,
    rng: np.random.Generator,
    noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PET activity (Bq/mL), SUVbw image and lesion instance map (0, 1..n) on ``grid``."""
    suv = PET_SUV[tissue].astype(np.float64)
    instances = np.zeros(grid.shape, dtype=np.uint8)
    for number, lesion in enumerate(lesions, start=1):
        inside = rasterise(lesion.shape, grid)
        suv[inside] = lesion.suv
        instances[inside] = number
    if noise > 0:
        suv = suv * (1.0 + rng.normal(0.0, noise, grid.shape))
        suv = np.clip(suv, 0.0, None)
    factor = acquisition.suv_bw_factor()
    return suv / factor, suv, instances


def lesion_truth(suv: np.ndarray, mask: np.ndarray, voxel_ml: float) -> LesionTruth:
    """SUVmax, SUVmean, MTV and TLG of ``suv`` inside ``mask``."""
    values = suv[mask]
    if values.size == 0:
        return LesionTruth(0.0, 0.0, 0.0, 0.0, 0)
    mtv = float(values.size * voxel_ml)
    mean = float(values.mean())
    return LesionTruth(float(values.max()), mean, mtv, mean * mtv, int(values.size))


def analytic_truth(lesion: Lesion) -> LesionTruth:
    """The lesion's continuous measures (what an ideal voxelisation approaches)."""
    volume = lesion.shape.volume_ml
    return LesionTruth(lesion.suv, lesion.suv, volume, lesion.suv * volume, None)
