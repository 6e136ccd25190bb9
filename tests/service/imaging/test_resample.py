"""Resampling between grids: identity, exact label round trips and patient-space agreement."""

from __future__ import annotations

import numpy as np
import pytest

from service.imaging.resample import Grid, grid_for_spacing, resample, resample_labels


def _grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Grid:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    return Grid(shape=shape, affine=affine)


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    labels = np.zeros(shape, dtype=np.uint8)
    for value in range(1, 5):
        centre = rng.integers(2, np.array(shape) - 2)
        labels[tuple(slice(c - 2, c + 2) for c in centre)] = value
    return labels


def test_identity_is_a_copy() -> None:
    grid = _grid((8, 9, 10), (1.0, 1.0, 2.0))
    image = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    out = resample(image, grid, grid)
    np.testing.assert_array_equal(out, image)
    assert out is not image


@pytest.mark.parametrize("factor", [2, 3])
def test_label_upsample_and_back_is_exact(factor: int) -> None:
    source = _grid((12, 10, 8), (1.5, 1.5, 3.0))
    labels = _labels(source.shape)
    fine = grid_for_spacing(source, tuple(s / factor for s in source.spacing))  # type: ignore[arg-type]
    assert fine.shape == tuple(n * factor for n in source.shape)
    up = resample_labels(labels, source, fine)
    back = resample_labels(up, fine, source)
    np.testing.assert_array_equal(back, labels)
    # Each coarse voxel became factor³ fine voxels of the same label.
    assert np.count_nonzero(up == 1) == np.count_nonzero(labels == 1) * factor**3


def test_grid_keeps_field_of_view_edges() -> None:
    source = _grid((10, 10, 10), (1.0, 1.0, 1.0))
    coarse = grid_for_spacing(source, (2.0, 2.0, 2.0))
    # Outer edge of voxel 0: centre minus half a voxel, the same for both grids.
    np.testing.assert_allclose(coarse.affine[:3, 3] - 1.0, source.affine[:3, 3] - 0.5, atol=1e-12)
    assert coarse.shape == (5, 5, 5)


def test_linear_resampling_matches_a_linear_field() -> None:
    source = _grid((20, 20, 10), (1.0, 1.0, 2.0))
    i, _j, _k = np.meshgrid(*[np.arange(n) for n in source.shape], indexing="ij")
    x = source.affine[0, 0] * i + source.affine[0, 3]
    image = (2.0 * x + 5.0).astype(np.float64)
    target = grid_for_spacing(source, (0.5, 0.5, 0.5))
    out = resample(image, source, target, order=1, fill=np.nan)
    ti, _, _ = np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij")
    tx = target.affine[0, 0] * ti + target.affine[0, 3]
    # Between the outer voxel centres the result is exactly linear; beyond the source's outer
    # voxel edges it is `fill`.
    si = (tx - source.affine[0, 3]) / source.affine[0, 0]
    interior = (si >= 0) & (si <= source.shape[0] - 1)
    np.testing.assert_allclose(out[interior], (2.0 * tx + 5.0)[interior], atol=1e-9)
    assert not np.isnan(out[interior]).any()
    assert np.isnan(out).sum() == 0  # the target grid lies within the source edges
    far = _grid((4, 4, 4), (1.0, 1.0, 1.0))
    far.affine[:3, 3] += 1000.0
    np.testing.assert_array_equal(resample(image, source, far, order=1, fill=-7.0), -7.0)


def test_shape_mismatch_is_refused() -> None:
    grid = _grid((4, 4, 4), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="does not match grid shape"):
        resample(np.zeros((4, 4, 5)), grid, grid)
