"""The MR part of a phantom: T1-weighted torso with one liver tumour, malignant or benign.

The two classes differ the way a classifier can learn: a malignant tumour is lobulated,
heterogeneous (textured, necrotic core, enhancing rim); a benign one is a smooth, homogeneous
ellipsoid of lower signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms.anatomy import MR_T1, Anatomy
from training.phantoms.config import LESION_CLASSES
from training.phantoms.shapes import Ellipsoid, Grid


@dataclass(frozen=True)
class Tumour:
    """An MR tumour: class, centre, mean radius and shape parameters."""

    kind: str  # "malignant" | "benign"
    centre: tuple[float, float, float]
    radius_mm: float
    lobes: int
    lobe_amplitude: float
    phase: float
    waves: tuple[tuple[float, float, float, float], ...]  # texture: (kx, ky, kz, phase)

    def __post_init__(self) -> None:
        if self.kind not in LESION_CLASSES:
            raise ValueError(f"tumour kind must be one of {LESION_CLASSES}, got {self.kind!r}")

    def fields(self, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        """Inside mask and normalised radius (0 at the centre, 1 at the edge) on ``grid``."""
        x, y, z = grid.coordinates()
        dx, dy, dz = x - self.centre[0], y - self.centre[1], z - self.centre[2]
        rho = np.sqrt(dx**2 + dy**2 + dz**2)
        theta = np.arctan2(dy, dx)
        flat = 1.0 - (dz / np.maximum(rho, 1e-3)) ** 2  # lobes fade towards the poles
        edge = self.radius_mm * (
            1.0 + self.lobe_amplitude * np.cos(self.lobes * theta + self.phase) * flat
        )
        relative = np.broadcast_to(rho / edge, grid.shape)
        return relative <= 1.0, relative

    def texture(self, grid: Grid) -> np.ndarray:
        """Smooth zero-mean texture in about −1..1 (malignant tumours only use it)."""
        x, y, z = grid.coordinates()
        total = np.zeros(grid.shape, dtype=np.float32)
        for kx, ky, kz, phase in self.waves:
            total += np.cos(kx * x + ky * y + kz * z + phase).astype(np.float32)
        return total / max(len(self.waves), 1)


def draw_tumour(rng: np.random.Generator, anatomy: Anatomy) -> Tumour:
    """Draw a tumour inside the liver (the liver is never removed)."""
    liver = anatomy.organs["liver"]
    assert isinstance(liver, Ellipsoid)
    kind = LESION_CLASSES[int(rng.integers(len(LESION_CLASSES)))]
    centre = np.asarray(liver.centre) + rng.uniform(-0.3, 0.3, 3) * np.asarray(liver.radii)
    malignant = kind == "malignant"
    waves = tuple(
        (*(rng.normal(0.0, 1.0, 3) / rng.uniform(2.0, 5.0)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(4 if malignant else 0)
    )
    return Tumour(
        kind=kind,
        centre=(float(centre[0]), float(centre[1]), float(centre[2])),
        radius_mm=float(rng.uniform(16.0, 28.0)),
        lobes=int(rng.integers(3, 6)) if malignant else 0,
        lobe_amplitude=float(rng.uniform(0.2, 0.35)) if malignant else 0.0,
        phase=float(rng.uniform(0, 2 * np.pi)),
        waves=tuple(tuple(float(v) for v in w) for w in waves),  # type: ignore[misc]
    )


def render_mr(
    tissue: np.ndarray,
    tumour: Tumour,
    grid: Grid,
    scale: float,
    offset: float,
    noise: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """MR signal (non-negative) and tumour mask on ``grid``."""
    signal = MR_T1[tissue].astype(np.float32)
    inside, relative = tumour.fields(grid)
    if tumour.kind == "malignant":
        core = 150.0 + 200.0 * np.clip(relative, 0.0, 1.0) ** 2  # necrotic core → enhancing rim
        values = core * (1.0 + 0.25 * tumour.texture(grid))
    else:
        values = np.full(grid.shape, 190.0, dtype=np.float32)
    signal[inside] = values[inside]
    x, y, _ = grid.coordinates()
    bias = 1.0 + 0.12 * np.broadcast_to((x + 0.5 * y) / 200.0, grid.shape)  # coil shading
    signal = signal * bias * scale + offset
    signal = signal + rng.normal(0.0, noise, grid.shape).astype(np.float32)
    return np.clip(signal, 0.0, 4000.0), inside.copy()
