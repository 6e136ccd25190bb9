"""Separable resampling (inside mask, arg-max of class channels) against the 3-D affine path.

The reference here is the per-channel code that ``resample_argmax`` replaced: each channel
resampled with ``scipy.ndimage.affine_transform`` (linear, edge extension), a second nearest-
neighbour transform for the field of view, then the first maximum over channels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from service.imaging.resample import (
    Grid,
    axis_sampling,
    grid_for_spacing,
    inside_mask,
    resample_argmax,
)

FILL = -1e4


def _affine(
    columns: tuple[int, int, int],
    signs: tuple[int, int, int],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float] = (-31.0, 12.5, 7.25),
) -> np.ndarray:
    """Voxel axis n runs along patient axis ``columns[n]`` with sign ``signs[n]``."""
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (patient, sign) in enumerate(zip(columns, signs, strict=True)):
        affine[patient, axis] = sign * spacing[axis]
    affine[:3, 3] = origin
    return affine


def _reference_inside(source: Grid, target: Grid) -> np.ndarray:
    mapping = np.linalg.solve(source.affine, target.affine)
    inside = ndimage.affine_transform(
        np.ones(source.shape, dtype=np.uint8),
        mapping[:3, :3],
        offset=mapping[:3, 3] + 1e-6,
        output_shape=target.shape,
        order=0,
        mode="grid-constant",
        cval=0,
    )
    return inside != 0


def _reference_scores(scores: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Every channel on ``target`` (K target-size float32 arrays), ``FILL`` outside."""
    mapping = np.linalg.solve(source.affine, target.affine)
    inside = _reference_inside(source, target)
    out = np.empty((scores.shape[0], *target.shape), dtype=np.float32)
    for channel, values in enumerate(scores):
        out[channel] = ndimage.affine_transform(
            values,
            mapping[:3, :3],
            offset=mapping[:3, 3],
            output_shape=target.shape,
            order=1,
            mode="nearest",
            prefilter=False,
        )
        out[channel][~inside] = FILL
    return out


def _assert_same_labels_up_to_rounding(
    labels: np.ndarray, reference: np.ndarray, max_differing: float = 1e-3
) -> None:
    """Labels equal the reference arg-max except where two channels tie within float32 rounding.

    ``max_differing`` bounds the share of such voxels: near-ties are rare in random scores, and
    common only where the scores tie exactly.
    """
    expected = np.argmax(reference, axis=0)
    differ = labels != expected
    top = reference.max(axis=0)[differ]
    chosen = np.take_along_axis(reference, labels[None].astype(np.intp), axis=0)[0][differ]
    gap = top - chosen
    assert np.all(gap <= 1e-5 * np.maximum(1.0, np.abs(top))), (
        f"{differ.sum()} voxels differ, largest score gap {gap.max():.3g}"
    )
    assert differ.mean() <= max_differing


# (target grid, spacing of the coarse grid made from it, shift of the coarse grid in mm)
CASES = {
    "anisotropic": (
        Grid((37, 29, 11), _affine((0, 1, 2), (1, 1, 1), (0.7, 0.9, 2.5))),
        (3.0, 2.0, 4.0),
        0.0,
    ),
    "permuted-flipped": (
        Grid((23, 31, 17), _affine((2, 0, 1), (-1, 1, -1), (1.1, 0.8, 1.7))),
        (2.5, 3.0, 2.2),
        0.0,
    ),
    "integer-factor": (
        Grid((24, 18, 12), _affine((0, 1, 2), (1, -1, 1), (1.0, 1.0, 1.5))),
        (3.0, 3.0, 3.0),
        0.0,
    ),
    "partly-outside": (
        Grid((30, 26, 14), _affine((1, 0, 2), (1, 1, -1), (0.9, 1.2, 2.0))),
        (2.0, 2.5, 3.0),
        7.3,
    ),
}


def _coarse(target: Grid, spacing: tuple[float, float, float], shift: float) -> Grid:
    coarse = grid_for_spacing(target, spacing)
    affine = coarse.affine.copy()
    affine[:3, 3] += shift
    return Grid(coarse.shape, affine)


@pytest.mark.parametrize("case", sorted(CASES))
def test_inside_mask_equals_the_3d_nearest_neighbour_test(case: str) -> None:
    target, spacing, shift = CASES[case]
    source = _coarse(target, spacing, shift)
    assert axis_sampling(source, target) is not None
    np.testing.assert_array_equal(inside_mask(source, target), _reference_inside(source, target))
    np.testing.assert_array_equal(inside_mask(target, source), _reference_inside(target, source))
    if case == "partly-outside":
        assert 0 < inside_mask(source, target).mean() < 1


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["normal", "integer-ties"])
def test_argmax_matches_per_channel_resampling(case: str, kind: str) -> None:
    target, spacing, shift = CASES[case]
    source = _coarse(target, spacing, shift)
    rng = np.random.default_rng(11)
    shape = (9, *source.shape)
    if kind == "normal":
        scores = rng.normal(0.0, 5.0, size=shape).astype(np.float32)
    else:  # few distinct values: exact ties between channels everywhere
        scores = rng.integers(0, 3, size=shape).astype(np.float32)
    labels = resample_argmax(scores, source, target)
    assert labels.dtype == np.uint8 and labels.shape == target.shape
    reference = _reference_scores(scores, source, target)
    _assert_same_labels_up_to_rounding(labels, reference, 1e-3 if kind == "normal" else 0.05)
    assert np.all(labels[~_reference_inside(source, target)] == 0)


def test_flipped_mapping_uses_the_separable_path() -> None:
    # Source axis 2 runs against the target's: negative scale along that axis.
    target = Grid((20, 16, 12), _affine((0, 1, 2), (1, 1, 1), (1.0, 1.0, 1.0)))
    source = Grid((8, 7, 6), _affine((0, 1, 2), (1, 1, -1), (2.6, 2.4, 2.1), (-30.0, 13.0, 19.0)))
    sampling = axis_sampling(source, target)
    assert sampling is not None
    scores = np.random.default_rng(2).normal(size=(4, *source.shape)).astype(np.float32)
    labels = resample_argmax(scores, source, target)
    _assert_same_labels_up_to_rounding(labels, _reference_scores(scores, source, target))


def test_oblique_grids_use_the_per_channel_path_exactly() -> None:
    target = Grid((18, 16, 10), _affine((0, 1, 2), (1, 1, 1), (1.0, 1.0, 2.0)))
    angle = np.deg2rad(20.0)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    source_affine = rotation @ _affine((0, 1, 2), (1, 1, 1), (2.5, 2.5, 3.0), (-28.0, 9.0, 5.0))
    source = Grid((9, 9, 8), source_affine)
    assert axis_sampling(source, target) is None
    scores = np.random.default_rng(4).normal(size=(5, *source.shape)).astype(np.float32)
    labels = resample_argmax(scores, source, target)
    reference = _reference_scores(scores, source, target)
    # Same scipy arithmetic as the reference: identical, ties included.
    np.testing.assert_array_equal(labels, np.argmax(reference, axis=0))
    np.testing.assert_array_equal(inside_mask(source, target), _reference_inside(source, target))


def test_bad_scores_are_refused() -> None:
    grid = Grid((4, 4, 4), np.eye(4))
    with pytest.raises(ValueError, match="must be \\(classes"):
        resample_argmax(np.zeros((2, 4, 4, 5), dtype=np.float32), grid, grid)
    with pytest.raises(ValueError, match="do not fit a uint8"):
        resample_argmax(np.zeros((300, 4, 4, 4), dtype=np.float32), grid, grid)
    with pytest.raises(ValueError, match="out must be a uint8 array of shape \\(4, 4, 4\\)"):
        resample_argmax(np.zeros((2, 4, 4, 4), np.float32), grid, grid, out=np.zeros((4, 4, 4)))


def test_writes_into_a_strided_view() -> None:
    target, spacing, shift = CASES["anisotropic"]
    source = _coarse(target, spacing, shift)
    scores = np.random.default_rng(8).normal(size=(6, *source.shape)).astype(np.float32)
    expected = resample_argmax(scores, source, target)
    holder = np.full(target.shape[::-1], 255, dtype=np.uint8)
    view = np.flip(np.transpose(holder), axis=(0, 2))
    assert resample_argmax(scores, source, target, out=view) is view
    np.testing.assert_array_equal(view, expected)
