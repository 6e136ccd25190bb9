"""Organ statistics: volume from the affine determinant, mean/std/min/max per label."""

from __future__ import annotations

import numpy as np
import pytest

from service.organ_stats import organ_statistics
from service.regions import Region


def test_statistics_per_label() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(40.0, 10.0, size=(20, 20, 20))
    labels = np.zeros(values.shape, dtype=np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    labels[10:18, 3:9, 5:6] = 2
    theta = np.deg2rad(30)
    rotation = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.5])
    masks = [
        Region("liver", 1, labels == 1),
        Region("spleen", 2, labels == 2),
        Region("pancreas", 5, labels == 5),
    ]
    liver, spleen, pancreas = organ_statistics(values, affine, masks)
    inside = values[labels == 1]
    assert (liver.number, liver.name, liver.voxel_count) == (1, "liver", 216)
    assert liver.volume_ml == pytest.approx(216 * 0.8 * 0.8 * 2.5 / 1000, rel=1e-12)
    assert liver.mean == pytest.approx(inside.mean())
    assert liver.std == pytest.approx(inside.std())
    assert (liver.min, liver.max) == (inside.min(), inside.max())
    assert spleen.voxel_count == 48
    assert pancreas.voxel_count == 0 and pancreas.mean is None and pancreas.volume_ml == 0.0


def test_shape_mismatch_refused() -> None:
    with pytest.raises(ValueError, match="liver"):
        organ_statistics(np.zeros((3, 3, 3)), np.eye(4), [Region("liver", 1, np.zeros((3, 3, 2)))])


def test_regions_sharing_a_name_stay_apart() -> None:
    values = np.arange(27, dtype=float).reshape(3, 3, 3)
    first, second = np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool)
    first[0, 0, 0] = second[2, 2, 2] = True
    stats = organ_statistics(
        values, np.eye(4), [Region("lesion", 1, first), Region("lesion", 2, second)]
    )
    assert [(s.number, s.max) for s in stats] == [(1, 0.0), (2, 26.0)]
