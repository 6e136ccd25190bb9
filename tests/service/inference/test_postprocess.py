"""Postprocessing against the implementations it replaced (kept here as references).

``to_source_labels`` once resampled each class channel onto the source grid with a 3-D affine
transform and ``clean_labels`` labelled components on the whole grid for every label; the
faster code must give the same label maps.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from service.imaging.resample import Grid
from service.inference.manifest import Manifest
from service.inference.postprocess import clean_labels, to_source_labels
from service.inference.preprocess import ModelGrid, to_model_grid

from .conftest import threshold_manifest


def _reference_resample(values: np.ndarray, source: Grid, target: Grid, fill: float) -> np.ndarray:
    mapping = np.linalg.solve(source.affine, target.affine)
    matrix, offset = mapping[:3, :3], mapping[:3, 3]
    out = ndimage.affine_transform(
        values, matrix, offset=offset, output_shape=target.shape, order=1, mode="nearest"
    )
    inside = ndimage.affine_transform(
        np.ones(source.shape, dtype=np.uint8),
        matrix,
        offset=offset + 1e-6,
        output_shape=target.shape,
        order=0,
        mode="grid-constant",
        cval=0,
    )
    out[inside == 0] = fill
    return out


def _reference_scores(logits: np.ndarray, grid: ModelGrid) -> np.ndarray:
    """Every class channel on the source grid (the old path's per-channel scores)."""
    inverse = grid.reorientation.inverse()
    channels = []
    for channel in logits:
        oriented = _reference_resample(channel, grid.model, grid.oriented, fill=-1e4)
        channels.append(inverse.apply(oriented, grid.oriented.affine)[0])
    return np.stack(channels)


def _reference_clean(labels: np.ndarray, affine: np.ndarray, manifest: Manifest) -> np.ndarray:
    rules = manifest.postprocessing
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    out = labels.copy()
    for entry in manifest.label_table().labels:
        mask = out == entry.number
        if not mask.any():
            continue
        components, count = ndimage.label(mask)
        if count > 1 and (entry.name in rules.largest_component or rules.min_component_ml > 0):
            sizes = np.bincount(components.ravel())[1:]
            keep = np.zeros(count + 1, dtype=bool)
            if entry.name in rules.largest_component:
                keep[1 + int(np.argmax(sizes))] = True
            else:
                keep[1:] = sizes * voxel_ml >= rules.min_component_ml
            out[mask & ~keep[components]] = 0
            mask = out == entry.number
        if mask.sum() * voxel_ml < rules.min_label_ml:
            out[mask] = 0
    return out


def _source_affine(columns: tuple[int, int, int], signs: tuple[int, int, int]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (patient, sign) in enumerate(zip(columns, signs, strict=True)):
        affine[patient, axis] = sign * (0.8, 1.1, 2.3)[axis]
    affine[:3, 3] = (-20.0, 35.5, 11.0)
    return affine


ORIENTATIONS = {
    "lps": ((0, 1, 2), (1, 1, 1)),
    "feet-first": ((0, 1, 2), (-1, 1, -1)),
    "sagittal-permuted": ((1, 2, 0), (1, -1, 1)),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_source_labels_equal_per_channel_resampling(orientation: str) -> None:
    affine = _source_affine(*ORIENTATIONS[orientation])
    values = np.zeros((33, 27, 13), dtype=np.float32)
    _, grid = to_model_grid(values, affine, (2.9, 3.1, 4.0), "LPS")
    logits = np.random.default_rng(5).normal(0, 3, size=(9, *grid.model.shape)).astype(np.float32)
    labels = to_source_labels(logits, grid)
    assert labels.shape == values.shape and labels.dtype == np.uint8
    reference = _reference_scores(logits, grid)
    expected = np.argmax(reference, axis=0)
    differ = labels != expected
    # Only where the two best classes tie within float32 rounding may the label differ.
    chosen = np.take_along_axis(reference, labels[None].astype(np.intp), axis=0)[0]
    gap = (reference.max(axis=0) - chosen)[differ]
    assert np.all(gap <= 1e-5 * np.maximum(1.0, np.abs(reference.max(axis=0)[differ])))
    assert differ.mean() < 1e-3


def _blobs(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for _ in range(14):
        value = int(rng.integers(1, 4))
        size = rng.integers(1, 6, size=3)
        corner = [int(rng.integers(0, n - s)) for n, s in zip(shape, size, strict=True)]
        labels[tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))] = value
    labels[0, 0, :3] = 12  # not in the label table: left alone
    return labels


RULES = {
    "none": {},
    "largest": {"largest_component": ["liver"]},
    "min-component": {"min_component_ml": 0.05},
    "min-label": {"min_label_ml": 0.6},
    "all": {"largest_component": ["spleen"], "min_component_ml": 0.03, "min_label_ml": 0.5},
}


@pytest.mark.parametrize("rules", sorted(RULES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_labels_equals_whole_grid_filtering(rules: str, seed: int) -> None:
    manifest = threshold_manifest("ct-organs", postprocessing=RULES[rules])
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    labels = _blobs((30, 28, 20), seed)
    before = labels.copy()
    cleaned = clean_labels(labels, affine, manifest)
    np.testing.assert_array_equal(labels, before)
    np.testing.assert_array_equal(cleaned, _reference_clean(labels, affine, manifest))
    # Every rule has something to remove in these blobs (so the comparison is not vacuous).
    assert (cleaned != labels).any() == (rules != "none")
