"""SUVpeak: partial-volume sphere weights, local (IBSI) and global peaks."""

from __future__ import annotations

import numpy as np
import pytest

from service.pet.peak import PEAK_RADIUS_MM, sphere_weights, suv_peak


def test_radius_is_one_millilitre() -> None:
    assert 4 / 3 * np.pi * PEAK_RADIUS_MM**3 == pytest.approx(1000.0, rel=1e-12)


@pytest.mark.parametrize(
    "spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (4.0, 4.0, 3.27), (4.6875, 4.6875, 3.27)]
)
def test_weights_cover_one_millilitre(spacing: tuple[float, float, float]) -> None:
    weights = sphere_weights(spacing)
    # Supersampling by n per axis misplaces at most the sub-samples cut by the surface; for
    # n = 15 that is well under 1 % of the sphere for voxels up to 5 mm.
    assert weights.sum() * np.prod(spacing) == pytest.approx(1000.0, rel=0.01)
    assert weights.max() == 1.0 and weights.min() >= 0.0
    # Partial volume, not a cube: some voxels are partly inside.
    assert np.any((weights > 0) & (weights < 1))
    np.testing.assert_array_equal(weights, weights[::-1, ::-1, ::-1])


def test_partial_volume_weights_converge() -> None:
    coarse = sphere_weights((4.0, 4.0, 4.0), supersampling=5)
    fine = sphere_weights((4.0, 4.0, 4.0), supersampling=45)
    default = sphere_weights((4.0, 4.0, 4.0))
    assert abs(default.sum() - fine.sum()) < abs(coarse.sum() - fine.sum())


def test_linear_gradient_peak_equals_centre_value() -> None:
    # A symmetric, normalised kernel averages a linear field to its centre value.
    spacing = 2.0
    i = np.arange(40, dtype=np.float64)[:, None, None] * np.ones((1, 40, 40))
    suv = 1.0 + 0.05 * i * spacing
    mask = np.zeros(suv.shape, dtype=bool)
    mask[10:20, 10:30, 10:30] = True
    peak = suv_peak(suv, mask, np.diag([spacing, spacing, spacing, 1.0]))
    assert peak.local == pytest.approx(suv[19, 20, 20], rel=1e-12)
    assert peak.global_ == pytest.approx(suv[19, 20, 20], rel=1e-12)
    assert peak.local_centre[0] == 19


def test_point_source_peak() -> None:
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    suv = np.zeros((21, 21, 21))
    suv[10, 10, 10] = 100.0
    peak = suv_peak(suv, suv > 0, affine)
    weights = sphere_weights((4.0, 4.0, 4.0))
    assert peak.local == pytest.approx(100.0 / weights.sum(), rel=1e-12)
    assert peak.local_centre == (10, 10, 10)


def test_global_peak_finds_plateau_away_from_hottest_voxel() -> None:
    suv = np.ones((40, 40, 40))
    suv[25:35, 25:35, 25:35] = 6.0  # broad plateau
    suv[8, 8, 8] = 10.0  # single hot voxel
    mask = np.zeros(suv.shape, dtype=bool)
    mask[5:36, 5:36, 5:36] = True
    peak = suv_peak(suv, mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert peak.local_centre == (8, 8, 8)
    assert peak.local < 6.0
    assert peak.global_ == pytest.approx(6.0, rel=1e-12)
    assert peak.global_ > peak.local


def test_peak_at_image_edge_uses_existing_voxels_only() -> None:
    suv = np.full((10, 10, 10), 3.0)
    mask = np.zeros(suv.shape, dtype=bool)
    mask[0, 0, 0] = True
    peak = suv_peak(suv, mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert peak.local == pytest.approx(3.0, rel=1e-12)


def test_empty_mask_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        suv_peak(np.ones((3, 3, 3)), np.zeros((3, 3, 3), bool), np.eye(4))
