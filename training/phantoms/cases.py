"""One phantom case in memory: CT, PET and MR arrays on their grids, with ground truth.

:func:`make_case` draws nothing from global state: the case's generator is seeded with the
dataset seed, site and case number, so a case can be regenerated alone (tests, training).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from service.dicom.image_writer import PetAcquisition
from training.phantoms.anatomy import CT_HU, Anatomy, draw_anatomy, organ_labels
from training.phantoms.config import GRID_SIZES, PhantomConfig, PhantomModality
from training.phantoms.mr import Tumour, draw_tumour, render_mr
from training.phantoms.pet import Lesion, draw_acquisition, draw_lesions, render_pet
from training.phantoms.shapes import Grid
from training.phantoms.sites import SCAN_CENTRE_Z_MM, SiteProfile, axial_grid, draw_site


@dataclass(frozen=True)
class CtImage:
    """CT in HU with its full organ label map (1..8) and body mask."""

    grid: Grid
    hu: np.ndarray
    organs: np.ndarray
    body: np.ndarray


@dataclass(frozen=True)
class PetImage:
    """PET activity (Bq/mL), the noise-free-or-not SUVbw image and lesion instances (0, 1..n)."""

    grid: Grid
    activity: np.ndarray
    suv: np.ndarray
    lesion_instances: np.ndarray
    lesions: tuple[Lesion, ...]
    acquisition: PetAcquisition


@dataclass(frozen=True)
class MrImage:
    """MR signal with the tumour mask and the tumour's description."""

    grid: Grid
    signal: np.ndarray
    tumour_mask: np.ndarray
    tumour: Tumour


@dataclass(frozen=True)
class PhantomCase:
    """A generated case; absent modalities are ``None``."""

    site: int
    case: int
    profile: SiteProfile
    anatomy: Anatomy
    study_datetime: datetime
    ct: CtImage | None
    pt: PetImage | None
    mr: MrImage | None

    @property
    def case_id(self) -> str:
        """``site-01/case-001`` style identifier."""
        return f"site-{self.site:02d}/case-{self.case:03d}"


def case_rng(seed: int, site: int, case: int, part: int) -> np.random.Generator:
    """The generator of one part (anatomy, CT, PET, MR) of one case."""
    return np.random.default_rng([seed, site, case, part])


def _ct(
    anatomy: Anatomy, profile: SiteProfile, config: PhantomConfig, rng: np.random.Generator
) -> CtImage:
    matrix, slices = GRID_SIZES[config.size].ct
    grid = axial_grid(
        profile.patient_position,
        matrix,
        slices,
        profile.ct_fov_mm,
        profile.ct_thickness_mm,
        (0.0, 0.0, SCAN_CENTRE_Z_MM),
    )
    tissue = anatomy.tissue_map(grid)
    hu = CT_HU[tissue] * np.float32(profile.ct_scale) + np.float32(profile.ct_offset_hu)
    hu = hu + rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(profile.ct_noise_hu)
    hu = np.clip(np.round(hu), -1024, 3071)
    return CtImage(
        grid=grid, hu=hu, organs=organ_labels(tissue), body=(tissue > 0).astype(np.uint8)
    )


def _pet(
    anatomy: Anatomy,
    profile: SiteProfile,
    config: PhantomConfig,
    rng: np.random.Generator,
    study_datetime: datetime,
) -> PetImage:
    matrix, slices = GRID_SIZES[config.size].pt
    grid = axial_grid(
        profile.patient_position,
        matrix,
        slices,
        profile.pet_fov_mm,
        profile.pet_thickness_mm,
        (0.0, 0.0, SCAN_CENTRE_Z_MM),
    )
    acquisition = draw_acquisition(rng, study_datetime)
    count = int(rng.integers(config.lesions_per_case[0], config.lesions_per_case[1] + 1))
    lesions = draw_lesions(rng, anatomy, grid, count)
    tissue = anatomy.tissue_map(grid)
    activity, suv, instances = render_pet(
        tissue, lesions, grid, acquisition, rng, noise=config.pet_noise
    )
    return PetImage(grid, activity, suv, instances, lesions, acquisition)


def _mr(
    anatomy: Anatomy, profile: SiteProfile, config: PhantomConfig, rng: np.random.Generator
) -> MrImage:
    matrix, slices = GRID_SIZES[config.size].mr
    tumour = draw_tumour(rng, anatomy)
    grid = axial_grid(
        profile.patient_position,
        matrix,
        slices,
        profile.mr_fov_mm,
        profile.mr_thickness_mm,
        tumour.centre,
        tilt_deg=profile.mr_tilt_deg,
    )
    tissue = anatomy.tissue_map(grid)
    signal, mask = render_mr(
        tissue, tumour, grid, profile.mr_scale, profile.mr_offset, profile.mr_noise, rng
    )
    return MrImage(grid=grid, signal=signal, tumour_mask=mask.astype(np.uint8), tumour=tumour)


def make_case(config: PhantomConfig, site: int, case: int) -> PhantomCase:
    """Generate case ``case`` of site ``site`` (both 1-based) in memory, without writing."""
    if not 1 <= site <= config.sites or case < 1:
        raise ValueError(f"site {site} / case {case} outside the configured dataset")
    profile = draw_site(site, config.seed, config.size)
    anatomy = draw_anatomy(case_rng(config.seed, site, case, 0), config.absent_organ_rate)
    study = datetime(2024, 1, 8, 8, 0) + timedelta(days=7 * (case - 1) + site)
    wanted = set(config.modalities)
    return PhantomCase(
        site=site,
        case=case,
        profile=profile,
        anatomy=anatomy,
        study_datetime=study,
        ct=(
            _ct(anatomy, profile, config, case_rng(config.seed, site, case, 1))
            if PhantomModality.CT in wanted
            else None
        ),
        pt=(
            _pet(anatomy, profile, config, case_rng(config.seed, site, case, 2), study)
            if PhantomModality.PT in wanted
            else None
        ),
        mr=(
            _mr(anatomy, profile, config, case_rng(config.seed, site, case, 3))
            if PhantomModality.MR in wanted
            else None
        ),
    )
