"""Reorientation is exact and keeps every voxel at its patient-space position."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.dicom.geometry import axis_codes
from service.imaging.orientation import plan_reorientation, reorient


def _affine(permutation: tuple[int, ...], signs: tuple[int, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0
    spacing = (0.7, 1.3, 2.5)
    for axis, (patient_axis, sign) in enumerate(zip(permutation, signs, strict=True)):
        affine[patient_axis, axis] = sign * spacing[axis]
    affine[:3, 3] = (-100.0, 40.0, 7.5)
    return affine


ALL = [
    (p, s) for p in itertools.permutations(range(3)) for s in itertools.product((1, -1), repeat=3)
]


@pytest.mark.parametrize(("permutation", "signs"), ALL)
def test_round_trip_exact_for_all_48_orientations(
    permutation: tuple[int, ...], signs: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(7)
    array = rng.integers(0, 1000, size=(4, 5, 6)).astype(np.int16)
    affine = _affine(permutation, signs)
    out, out_affine, step = reorient(array, affine, "LPS")
    assert axis_codes(out_affine) == "LPS"
    back, back_affine = step.inverse().apply(out, out_affine)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_affine, affine, atol=1e-12)
    # The voxel holding the value at index (1, 2, 3) is still at the same patient position.
    where = np.argwhere(out == array[1, 2, 3])
    positions = [out_affine @ np.array([*w, 1.0]) for w in where]
    target = affine @ np.array([1, 2, 3, 1.0])
    assert any(np.allclose(p, target) for p in positions)


def test_ras_target_and_channels_kept() -> None:
    array = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2)
    out, out_affine, _ = reorient(array, _affine((0, 1, 2), (1, 1, 1)), "RAS")
    assert axis_codes(out_affine) == "RAS"
    assert out.shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(out[0, 0, 0], array[1, 2, 0])


def test_bad_target_is_refused() -> None:
    with pytest.raises(ValueError, match="must name each patient axis once"):
        plan_reorientation(np.eye(4), "LLS")
