"""Per-site acquisition heterogeneity and the image grids it implies.

Each site draws once: scanner vendor, patient position, field of view, slice thickness, noise
and intensity calibration. Patient position sets the grid's direction in patient space as a
scanner would (feet-first reverses the slice direction and the row direction, prone reverses
rows and columns), while the anatomy stays put in patient space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.phantoms.config import GRID_SIZES, Size
from training.phantoms.shapes import Grid, rotation_about

VENDORS: tuple[tuple[str, str], ...] = (
    ("SIEMENS", "SOMATOM Force"),
    ("GE MEDICAL SYSTEMS", "Discovery MI"),
    ("Philips", "Ingenuity TF"),
    ("Canon Medical Systems", "Aquilion ONE"),
)
POSITIONS = ("HFS", "FFS", "HFP")
#: Grid direction (columns: i, j, k in LPS) a scanner writes for each patient position.
DIRECTIONS: dict[str, np.ndarray] = {
    "HFS": np.diag([1.0, 1.0, 1.0]),
    "FFS": np.diag([-1.0, 1.0, -1.0]),
    "HFP": np.diag([-1.0, -1.0, 1.0]),
    "FFP": np.diag([1.0, -1.0, -1.0]),
}
SCAN_CENTRE_Z_MM = 20.0  # the phantom torso is scanned around this height


@dataclass(frozen=True)
class SiteProfile:
    """Acquisition settings drawn for one site."""

    site: int
    manufacturer: str
    model: str
    institution: str
    patient_position: str
    ct_fov_mm: float
    ct_thickness_mm: float
    pet_fov_mm: float
    pet_thickness_mm: float
    mr_fov_mm: float
    mr_thickness_mm: float
    mr_tilt_deg: float  # MR slab rotation about the patient's left-right axis
    ct_noise_hu: float
    ct_offset_hu: float
    ct_scale: float
    mr_noise: float
    mr_scale: float
    mr_offset: float

    def describe(self) -> dict[str, object]:
        """Plain data for dataset.json."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def draw_site(site: int, seed: int, size: Size) -> SiteProfile:
    """Draw site ``site``'s acquisition settings (deterministic in ``seed`` and ``site``)."""
    rng = np.random.default_rng([seed, site, 0xC0FFEE])
    manufacturer, model = VENDORS[int(rng.integers(len(VENDORS)))]
    lo, hi = GRID_SIZES[size].ct_thickness_mm
    ct_fov = float(rng.uniform(360.0, 440.0))
    return SiteProfile(
        site=site,
        manufacturer=manufacturer,
        model=model,
        institution=f"Phantom Hospital {site:02d}",
        patient_position=POSITIONS[int(rng.integers(len(POSITIONS)))],
        ct_fov_mm=ct_fov,
        ct_thickness_mm=float(rng.uniform(lo, hi)),
        pet_fov_mm=float(rng.uniform(420.0, 520.0)),
        pet_thickness_mm=float(rng.uniform(lo, hi) * 1.1),
        mr_fov_mm=float(rng.uniform(340.0, 420.0)),
        mr_thickness_mm=float(rng.uniform(lo, hi) * 1.2),
        mr_tilt_deg=float(rng.uniform(0.0, 12.0)),
        ct_noise_hu=float(rng.uniform(5.0, 25.0)),
        ct_offset_hu=float(rng.uniform(-15.0, 15.0)),
        ct_scale=float(rng.uniform(0.95, 1.05)),
        mr_noise=float(rng.uniform(10.0, 40.0)),
        mr_scale=float(rng.uniform(0.6, 1.8)),
        mr_offset=float(rng.uniform(0.0, 100.0)),
    )


def axial_grid(
    position: str,
    matrix: int,
    slices: int,
    fov_mm: float,
    thickness_mm: float,
    centre: tuple[float, float, float],
    tilt_deg: float = 0.0,
) -> Grid:
    """A square grid centred on ``centre`` with a scanner's directions for ``position``."""
    pixel = fov_mm / matrix
    directions = rotation_about((1.0, 0.0, 0.0), tilt_deg) @ DIRECTIONS[position]
    affine = np.eye(4)
    affine[:3, :3] = directions @ np.diag([pixel, pixel, thickness_mm])
    half = (np.array([matrix, matrix, slices], dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = np.asarray(centre) - affine[:3, :3] @ half
    return Grid(shape=(matrix, matrix, slices), affine=affine)
