"""The synthetic torso: organs as smooth solids in patient LPS space, and their tissue map.

Patient axes: +x towards the patient's left, +y posterior, +z superior (DICOM LPS). The liver
sits on the patient's right (−x), spleen on the left, kidneys posterior, the spinal cord in
its canal behind the vertebral body. Every modality rasterises the same :class:`Anatomy`, so
a case's CT, PET and MR agree in patient space whatever their grids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms.config import CT_ORGANS, ORGAN_VALUES, REMOVABLE_ORGANS
from training.phantoms.shapes import Ellipsoid, Grid, Solid, SuperellipticCylinder, rotation_about

# Tissue codes beyond the organ values 1..8 (0 is air outside the body).
AIR, FAT, MUSCLE, BONE = 0, 9, 10, 11
N_TISSUES = 12
TISSUE_NAMES = {AIR: "air", FAT: "fat", MUSCLE: "muscle", BONE: "bone", **CT_ORGANS}

#: Portal-venous CT numbers (HU) per tissue code.
CT_HU = np.array([-1000, 105, 120, 170, 170, 85, 35, -850, -850, -100, 45, 650], dtype=np.float32)
#: SUVbw of background uptake per tissue code (PET).
PET_SUV = np.array([0.0, 2.2, 1.8, 3.0, 3.0, 1.4, 1.0, 0.35, 0.35, 0.4, 0.9, 1.2], np.float64)
#: T1-weighted MR signal (arbitrary units) per tissue code.
MR_T1 = np.array([0, 520, 430, 460, 460, 540, 380, 60, 60, 900, 400, 620], dtype=np.float32)

_PAINT_ORDER = (
    "lung_left",
    "lung_right",
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "pancreas",
)
_ORGAN_TEMPLATES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # name: (centre mm, radii mm) for an average patient
    "lung_left": ((78.0, 10.0, 95.0), (55.0, 72.0, 90.0)),
    "lung_right": ((-80.0, 10.0, 90.0), (58.0, 72.0, 95.0)),
    "liver": ((-68.0, -5.0, 5.0), (78.0, 68.0, 62.0)),
    "spleen": ((85.0, 45.0, 15.0), (30.0, 38.0, 48.0)),
    "kidney_left": ((68.0, 62.0, -60.0), (27.0, 24.0, 52.0)),
    "kidney_right": ((-70.0, 64.0, -68.0), (27.0, 24.0, 52.0)),
    "pancreas": ((12.0, 22.0, -22.0), (62.0, 13.0, 14.0)),
}


@dataclass(frozen=True)
class Anatomy:
    """One patient's torso: body outline, bones, spinal cord and organs (absent ones left out)."""

    body: SuperellipticCylinder
    muscle: SuperellipticCylinder  # everything inside the body but outside this is fat
    vertebra: SuperellipticCylinder
    canal: SuperellipticCylinder  # bony ring of the spinal canal
    spinal_cord: SuperellipticCylinder
    organs: dict[str, Solid]
    absent: tuple[str, ...]

    def tissue_map(self, grid: Grid) -> np.ndarray:
        """Tissue code of every voxel (uint8; organ codes are the ``ct-organs`` values)."""
        x, y, z = grid.coordinates()
        tissue = np.zeros(grid.shape, dtype=np.uint8)

        def paint(solid: Solid, code: int) -> None:
            tissue[np.broadcast_to(solid.inside(x, y, z), grid.shape)] = code

        paint(self.body, FAT)
        paint(self.muscle, MUSCLE)
        for name in _PAINT_ORDER:
            if name in self.organs:
                paint(self.organs[name], ORGAN_VALUES[name])
        paint(self.vertebra, BONE)
        paint(self.canal, BONE)
        paint(self.spinal_cord, ORGAN_VALUES["spinal_cord"])
        return tissue


def organ_labels(tissue: np.ndarray) -> np.ndarray:
    """The ``ct-organs`` label map (1..8) of a tissue map."""
    return np.where((tissue >= 1) & (tissue <= 8), tissue, 0).astype(np.uint8)


def draw_anatomy(rng: np.random.Generator, absent_organ_rate: float) -> Anatomy:
    """Draw one patient: body size, organ positions and sizes, and possibly an absent organ."""
    girth = float(rng.uniform(0.88, 1.12))
    z_range = (-400.0, 400.0)
    body = SuperellipticCylinder((0.0, 0.0), (165.0 * girth, 112.0 * girth), z_range, 2.6)
    fat = float(rng.uniform(8.0, 25.0)) * girth
    muscle = SuperellipticCylinder(
        (0.0, 0.0), (165.0 * girth - fat, 112.0 * girth - fat), z_range, 2.6
    )
    back = 112.0 * girth - fat
    vertebra = SuperellipticCylinder((0.0, back - 62.0), (20.0, 16.0), z_range, 2.2)
    canal = SuperellipticCylinder((0.0, back - 36.0), (13.0, 11.0), z_range, 2.0)
    cord = SuperellipticCylinder((0.0, back - 36.0), (6.5, 5.5), z_range, 2.0)
    # Both draws happen whatever the rate, so the rate never shifts the rest of the anatomy.
    removed = REMOVABLE_ORGANS[int(rng.integers(len(REMOVABLE_ORGANS)))]
    absent = (removed,) if rng.uniform() < absent_organ_rate else ()
    organs: dict[str, Solid] = {}
    for name, (centre, radii) in _ORGAN_TEMPLATES.items():
        shift = rng.normal(0.0, 4.0, 3)
        scale = rng.uniform(0.9, 1.1, 3)
        c = (centre[0] * girth + shift[0], centre[1] * girth + shift[1], centre[2] + shift[2])
        r = tuple(float(v) for v in np.asarray(radii) * scale)
        rotation = np.eye(3)
        if name == "pancreas":  # tail rises towards the spleen
            rotation = rotation_about((0.0, 1.0, 0.0), -15.0) @ rotation_about((0, 0, 1), 12.0)
        if name not in absent:
            organs[name] = Ellipsoid(
                (float(c[0]), float(c[1]), float(c[2])),
                (r[0], r[1], r[2]),
                tuple(tuple(float(v) for v in row) for row in rotation),
            )
    return Anatomy(body, muscle, vertebra, canal, cord, organs, absent)
