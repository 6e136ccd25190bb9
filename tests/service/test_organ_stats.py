"""Organ statistics: volume from the affine determinant, mean/std/min/max per label."""

from __future__ import annotations

import numpy as np
import pytest

from service.organ_stats import organ_statistics


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
    masks = {"liver": labels == 1, "spleen": labels == 2, "pancreas": labels == 5}
    liver, spleen, pancreas = organ_statistics(values, affine, masks)
    inside = values[labels == 1]
    assert liver.name == "liver" and liver.voxel_count == 216
    assert liver.volume_ml == pytest.approx(216 * 0.8 * 0.8 * 2.5 / 1000, rel=1e-12)
    assert liver.mean == pytest.approx(inside.mean())
    assert liver.std == pytest.approx(inside.std())
    assert (liver.min, liver.max) == (inside.min(), inside.max())
    assert spleen.voxel_count == 48
    assert pancreas.voxel_count == 0 and pancreas.mean is None and pancreas.volume_ml == 0.0


def test_shape_mismatch_refused() -> None:
    with pytest.raises(ValueError, match="liver"):
        organ_statistics(np.zeros((3, 3, 3)), np.eye(4), {"liver": np.zeros((3, 3, 2), bool)})
