"""The model grid: sampling the source directly equals reorienting first, then resampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.imaging.orientation import plan_reorientation, reorient
from service.imaging.resample import Grid, resample
from service.inference.preprocess import reoriented_grid, to_model_grid


def _affine(permutation: tuple[int, ...], signs: tuple[int, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (patient_axis, sign) in enumerate(zip(permutation, signs, strict=True)):
        affine[patient_axis, axis] = sign * (0.9, 1.3, 2.6)[axis]
    affine[:3, 3] = (-60.0, 25.0, 12.5)
    return affine


ALL = [
    (p, s) for p in itertools.permutations(range(3)) for s in itertools.product((1, -1), repeat=3)
]


@pytest.mark.parametrize(("permutation", "signs"), ALL)
def test_reoriented_grid_is_the_grid_of_the_reoriented_array(
    permutation: tuple[int, ...], signs: tuple[int, ...]
) -> None:
    affine = _affine(permutation, signs)
    array = np.zeros((5, 6, 7), dtype=np.uint8)
    out, out_affine, step = reorient(array, affine, "LPS")
    grid = reoriented_grid(Grid(shape=(5, 6, 7), affine=affine), step)
    assert grid.shape == out.shape
    np.testing.assert_array_equal(grid.affine, out_affine)


@pytest.mark.parametrize(("permutation", "signs"), ALL[::5])
def test_model_grid_values_equal_reorient_then_resample(
    permutation: tuple[int, ...], signs: tuple[int, ...]
) -> None:
    affine = _affine(permutation, signs)
    values = np.random.default_rng(1).normal(40.0, 300.0, size=(23, 17, 9)).astype(np.float32)
    spacing = (2.2, 3.1, 2.9)
    got, grid = to_model_grid(values, affine, spacing, "LPS")
    # The replaced path: an exact reoriented copy, resampled onto the model grid.
    oriented, oriented_affine, step = reorient(values, affine, "LPS")
    assert step == plan_reorientation(affine, "LPS") == grid.reorientation
    np.testing.assert_array_equal(grid.oriented.affine, oriented_affine)
    expected = resample(oriented, grid.oriented, grid.model, order=1, fill=float(oriented.min()))
    assert got.shape == expected.shape == grid.model.shape
    # Coordinates differ by float rounding only: values agree to float32 precision.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
