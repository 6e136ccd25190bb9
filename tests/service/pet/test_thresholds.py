"""Threshold delineation baselines on a two-lesion phantom."""

from __future__ import annotations

import numpy as np
import pytest

from service.pet.thresholds import (
    ThresholdMethod,
    ThresholdSettings,
    absolute,
    background_adaptive,
    delineate,
    fixed_fraction,
)

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture
def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Background 1; hot lesion A (SUV 8) and faint lesion B (SUV 2), each inside a VOI box."""
    shape = (60, 60, 40)
    grid = np.indices(shape).astype(np.float64)
    suv = np.ones(shape)
    a = ((grid - np.array([15, 15, 20])[:, None, None, None]) ** 2).sum(0) <= 36
    b = ((grid - np.array([45, 45, 20])[:, None, None, None]) ** 2).sum(0) <= 25
    suv[a], suv[b] = 8.0, 2.0
    voi = np.zeros(shape, dtype=bool)
    voi[5:26, 5:26, 10:31] = True
    voi[36:55, 36:55, 11:30] = True
    return suv, voi, a, b


def test_fixed_fraction_is_per_lesion(phantom) -> None:
    suv, voi, a, _ = phantom
    out = fixed_fraction(suv, voi)
    assert np.array_equal(out[:30], a[:30])  # 41 % of 8 = 3.28 separates lesion A exactly
    # 41 % of 2 = 0.82 lies below the background: lesion B's whole VOI box is kept.
    assert np.array_equal(out[30:], voi[30:])


def test_absolute_threshold(phantom) -> None:
    suv, voi, a, _ = phantom
    assert np.array_equal(absolute(suv, voi), a)
    assert np.array_equal(absolute(suv), a)


def test_background_adaptive_with_shell(phantom) -> None:
    suv, voi, a, b = phantom
    out = background_adaptive(suv, voi, AFFINE)
    assert np.array_equal(out, a | b)  # B: 1 + 0.5 × (2 − 1) = 1.5 separates it from background


def test_background_adaptive_with_reference_mask(phantom) -> None:
    suv, voi, a, _ = phantom
    suv = suv.copy()
    reference = np.zeros(suv.shape, dtype=bool)
    reference[0:3, 0:3, 0:3] = True
    suv[reference] = 4.0  # a hot reference lifts B's cut to 4 + 0.5 × (2 − 4) = 3
    out = background_adaptive(suv, voi, AFFINE, reference)
    assert np.array_equal(out, a)


def test_delineate_dispatch_and_settings(phantom) -> None:
    suv, voi, a, _ = phantom
    assert np.array_equal(delineate(ThresholdMethod.ABSOLUTE, suv, voi, AFFINE), a)
    settings = ThresholdSettings(absolute_suv=1.5)
    assert delineate("absolute", suv, voi, AFFINE, settings).sum() > a.sum()
    with pytest.raises(ValueError, match="fraction"):
        ThresholdSettings(fraction=41)
