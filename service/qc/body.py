"""What the image shows, whatever a model says: the body, the trunk, the lungs, the abdomen.

Everything here runs on a coarse copy of the volume (about 4 mm voxels, block means), so a
512×512×300 CT costs a few hundred milliseconds, and the masks are small enough to keep for
the structure checks. Thresholds are the textbook ones, named below with their sources:

- CT body: above −500 HU, the threshold between air and soft tissue that lung and body
  segmentation use (Hu, Hoffman & Reinhardt, IEEE TMI 2001;20:490–498);
- CT lung parenchyma: −950 to −500 HU; below −950 HU is air or emphysema (Gevenois et al.,
  Am J Respir Crit Care Med 1996;154:187–192), above −500 HU soft tissue (Hu et al. 2001);
- PET body: SUV above 0.1; fat and lung take up 0.2–0.6 (Boellaard et al., EANM guideline
  v2.0, Eur J Nucl Med Mol Imaging 2015;42:328–354), air only scatter;
- MR body: above a tenth of the 99th percentile of the signal (air is noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from service.qc.enum import BodyRegion

COARSE_MM = 4.0
CT_BODY_HU = -500.0
CT_LUNG_HU = (-950.0, -500.0)
PET_BODY_SUV = 0.1
MR_BODY_FRACTION = 0.1
MIN_BODY_ML = 50.0  # less than this is not a patient (a fist is about 400 mL)
MIN_LUNG_ML = 50.0  # lung parenchyma inside the body: a lung base at least
TRUNK_WIDTH_MM = 200.0  # an adult abdomen is ~300 mm wide; a thigh ~150, a head ~150
TRUNK_SPLIT_MM = 20.0  # an arm touching the chest along less than twice this is cut off
_BODY_PART_ML = 0.01  # components under 1 % of the largest are noise or the table


@dataclass(frozen=True)
class CoarseGrid:
    """How the coarse grid maps onto the volume: voxel (i, j, k) → (i, j, k) // factors."""

    factors: tuple[int, int, int]
    spacing: tuple[float, float, float]  # coarse voxel size, mm
    affine: np.ndarray  # of the coarse grid (voxel centres of the blocks)

    @property
    def voxel_ml(self) -> float:
        """Volume of one coarse voxel, mL."""
        return float(np.prod(self.spacing)) / 1000.0


def coarse_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> CoarseGrid:
    """Integer block sizes that bring each axis near :data:`COARSE_MM`."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    factors = tuple(
        int(max(1, min(n, round(COARSE_MM / s)))) for s, n in zip(spacing, shape, strict=True)
    )
    scale = np.diag([*factors, 1]).astype(float)
    shift = np.eye(4)
    shift[:3, 3] = [(f - 1) / 2 for f in factors]
    coarse_affine = affine @ shift @ scale
    return CoarseGrid(
        factors=(factors[0], factors[1], factors[2]),
        spacing=tuple(float(s * f) for s, f in zip(spacing, factors, strict=True)),  # type: ignore[arg-type]
        affine=coarse_affine,
    )


def block_mean(values: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Mean of each ``factors`` block (edge blocks padded with the edge value)."""
    pads = [(0, (-n) % f) for n, f in zip(values.shape, factors, strict=True)]
    padded = np.pad(values.astype(np.float32, copy=False), pads, mode="edge")
    a, b, c = (n // f for n, f in zip(padded.shape, factors, strict=True))
    fi, fj, fk = factors
    return padded.reshape(a, fi, b, fj, c, fk).mean(axis=(1, 3, 5), dtype=np.float32)


@dataclass(frozen=True)
class BodyAnalysis:
    """The body, its trunk and the regions the field of view shows, on the coarse grid."""

    grid: CoarseGrid
    values: np.ndarray  # coarse block means (HU, SUV or MR signal)
    body: np.ndarray  # bool: inside the patient (holes such as lungs and bowel gas filled)
    trunk: np.ndarray  # bool: the largest cross-section of the body in each plane
    lungs: np.ndarray  # bool: lung parenchyma inside the body (CT only; else all False)
    regions_seen: frozenset[BodyRegion]
    regions_assessed: frozenset[BodyRegion]  # regions the image can confirm or rule out

    @property
    def body_ml(self) -> float:
        """Volume of the body in the field of view, mL."""
        return float(self.body.sum()) * self.grid.voxel_ml

    @property
    def lungs_ml(self) -> float:
        """Volume of lung parenchyma in the field of view, mL."""
        return float(self.lungs.sum()) * self.grid.voxel_ml

    @property
    def has_body(self) -> bool:
        """Whether the image shows a patient."""
        return self.body_ml >= MIN_BODY_ML


def _body(values: np.ndarray, modality: str) -> np.ndarray | None:
    """Voxels above the modality's body threshold, or None when it has no rule."""
    if modality == "CT":
        return values > CT_BODY_HU
    if modality == "PT":
        return values > PET_BODY_SUV
    if modality == "MR":
        top = float(np.percentile(values, 99)) if values.size else 0.0
        return values > MR_BODY_FRACTION * top if top > 0 else np.zeros(values.shape, bool)
    return None


def _clean(mask: np.ndarray) -> np.ndarray:
    """Fill holes per plane (lungs, bowel gas), then drop thin shells and specks.

    The in-plane opening removes shells one voxel thick (the table top); parts under 1 % of
    the largest are noise.
    """
    plane = np.zeros((3, 3, 1), dtype=bool)
    plane[:, :, 0] = ndimage.generate_binary_structure(2, 1)
    filled = np.stack(
        [ndimage.binary_fill_holes(mask[:, :, k]) for k in range(mask.shape[2])], axis=2
    )
    opened = ndimage.binary_opening(filled, structure=plane)
    labels, count = ndimage.label(opened)
    if count == 0:
        return opened
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= _BODY_PART_ML * sizes.max()) + 1
    return np.isin(labels, keep)


def _trunk(body: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """The largest body cross-section of each plane: the trunk, without arms or the other leg.

    An arm often lies against the chest, joined to it by skin. Each plane is eroded by
    :data:`TRUNK_SPLIT_MM` (which parts an arm from the chest along a contact that short),
    the largest part kept, and grown back by as much inside the body.
    """
    steps = max(1, round(TRUNK_SPLIT_MM / min(grid.spacing[:2])))
    trunk = np.zeros_like(body)
    for k in range(body.shape[2]):
        plane = body[:, :, k]
        core = _largest_part(ndimage.binary_erosion(plane, iterations=steps))
        if core.any():
            trunk[:, :, k] = ndimage.binary_dilation(core, iterations=steps) & plane
        else:  # too thin to erode (a foot, the top of the head): its largest part
            trunk[:, :, k] = _largest_part(plane)
    return trunk


def _largest_part(plane: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(plane)
    if count == 0:
        return plane.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(np.argmax(sizes)) + 1


def _lungs(values: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Lung-density voxels well inside the body (skin and gas rims opened away)."""
    low, high = CT_LUNG_HU
    inner = ndimage.binary_erosion(body, iterations=1)
    return ndimage.binary_opening((values >= low) & (values <= high) & inner)


def _abdomen_slices(trunk: np.ndarray, lungs: np.ndarray, grid: CoarseGrid) -> np.ndarray:
    """Axial planes showing a trunk-wide cross-section without lung, below any lung."""
    width_axis = 0 if abs(grid.affine[0, 0]) >= abs(grid.affine[0, 1]) else 1
    lung_planes = np.flatnonzero(lungs.any(axis=(0, 1)))
    # The LPS z of each plane: abdomen lies caudal (lower z) to the lungs.
    z = grid.affine[2, 2] * np.arange(trunk.shape[2]) + grid.affine[2, 3]
    lowest_lung = z[lung_planes].min() if lung_planes.size else np.inf
    found = np.zeros(trunk.shape[2], dtype=bool)
    for k in range(trunk.shape[2]):
        if lungs[:, :, k].any() or z[k] >= lowest_lung:
            continue
        extent = np.flatnonzero(trunk[:, :, k].any(axis=1 - width_axis))
        if extent.size:
            width = (extent[-1] - extent[0] + 1) * grid.spacing[width_axis]
            found[k] = width >= TRUNK_WIDTH_MM
    return found


def analyse_body(values: np.ndarray, affine: np.ndarray, modality: str) -> BodyAnalysis | None:
    """Body, trunk, lungs and the regions seen, or None for a modality without a body rule.

    ``values`` are HU for CT, SUV for PET and the stored signal for MR.
    """
    grid = coarse_grid(affine, values.shape)
    coarse = block_mean(values, grid.factors)
    raw = _body(coarse, modality)
    if raw is None:
        return None
    body = _clean(raw)
    trunk = _trunk(body, grid)
    seen: set[BodyRegion] = set()
    assessed: set[BodyRegion] = set()
    lungs = np.zeros(body.shape, dtype=bool)
    if modality == "CT":
        lungs = _lungs(coarse, body)
        assessed |= {BodyRegion.THORAX, BodyRegion.ABDOMEN}
        if float(lungs.sum()) * grid.voxel_ml >= MIN_LUNG_ML:
            seen.add(BodyRegion.THORAX)
        if _abdomen_slices(trunk, lungs, grid).any():
            seen.add(BodyRegion.ABDOMEN)
    return BodyAnalysis(
        grid=grid,
        values=coarse,
        body=body,
        trunk=trunk,
        lungs=lungs,
        regions_seen=frozenset(seen),
        regions_assessed=frozenset(assessed),
    )
