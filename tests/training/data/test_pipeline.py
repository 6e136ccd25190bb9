"""The training patch pipeline keeps image and labels together and keeps orientation canonical."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from monai import transforms as mt

from training.data.pipeline import train_transforms
from training.tasks import TASKS, TaskName

TASK = dataclasses.replace(TASKS[TaskName.CT_ORGANS], patch_size=(16, 16, 16))


def _first(out: dict | list[dict]) -> dict:
    return out[0] if isinstance(out, list) else out


def _ramps() -> dict[str, np.ndarray]:
    """A 24³ case (the crop size of 16³ patches) whose labels 1..8 grow along every axis."""
    i, j, k = np.meshgrid(*(np.arange(24),) * 3, indexing="ij")
    labels = 1 + i // 12 + 2 * (j // 12) + 4 * (k // 12)
    return {"image": labels[None].astype(np.float32), "label": labels[None].astype(np.int64)}


def test_spatial_augmentation_moves_image_and_labels_together() -> None:
    transforms = train_transforms(TASK, foreground_ratio=0.67, seed=5, flip_prob=0.5)
    intensity = (mt.RandScaleIntensityd, mt.RandShiftIntensityd, mt.RandGaussianNoised)
    spatial = type(transforms)([t for t in transforms.transforms if not isinstance(t, intensity)])
    spatial.set_random_state(seed=5)
    case = _ramps()
    for _ in range(20):
        out = _first(spatial(dict(case)))
        image, label = np.asarray(out["image"])[0], np.asarray(out["label"])[0]
        # Bilinear image against nearest labels: equal away from the octant borders.
        assert (np.rint(image) == label).mean() > 0.9


def _flipped(patch: np.ndarray, axis: int) -> bool:
    low = np.take(patch, range(8), axis=axis).mean()
    high = np.take(patch, range(8, 16), axis=axis).mean()
    return bool(low > high)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_flip_probability_is_obeyed_and_left_right_never_flips(flip_prob: float) -> None:
    transforms = train_transforms(TASK, foreground_ratio=1.0, seed=2, flip_prob=flip_prob)
    case = _ramps()
    for _ in range(10):
        image = np.asarray(_first(transforms(dict(case)))["image"])[0]
        assert not _flipped(image, 0)  # left/right labels: never swapped
        assert _flipped(image, 1) == _flipped(image, 2) == (flip_prob == 1.0)


def test_orientation_flips_are_rare_by_default() -> None:
    # Inputs are reoriented to LPS before training and inference; a patch flipped along the
    # anterior-posterior or superior-inferior axis shows the network an orientation it never
    # meets at inference, so by default most patches keep the canonical orientation.
    transforms = train_transforms(TASK, foreground_ratio=1.0, seed=0)
    case = _ramps()
    draws = 200
    flipped = 0
    for _ in range(draws):
        image = np.asarray(_first(transforms(dict(case)))["image"])[0]
        flipped += _flipped(image, 1) or _flipped(image, 2)
    assert flipped / draws < 0.35


def _centre_offsets(foreground_ratio: float, draws: int) -> tuple[np.ndarray, list[int]]:
    """Where a one-voxel structure lands in the patch, and the class at each patch centre."""
    task = dataclasses.replace(TASKS[TaskName.PET_LESION], patch_size=(16, 16, 16))
    labels = np.zeros((48, 48, 48), dtype=np.int64)
    labels[29:32, 19:22, 24:27] = 1
    case = {"image": labels[None].astype(np.float32), "label": labels[None]}
    transforms = train_transforms(task, foreground_ratio, seed=1, flip_prob=0.0)
    offsets, centres = [], []
    for _ in range(draws):
        label = np.asarray(_first(transforms(dict(case)))["label"])[0]
        centres.append(int(label[8, 8, 8]))
        if label.any():
            offsets.append(np.rint(np.argwhere(label == 1).mean(0)).astype(int) - 8)
    return np.asarray(offsets), centres


def test_foreground_patches_hold_the_structure_but_not_always_in_the_centre() -> None:
    offsets, centres = _centre_offsets(foreground_ratio=1.0, draws=40)
    # Every patch holds the structure (27 voxels in 110592) ...
    assert len(offsets) == 40
    # ... at many places, not only at the patch's centre.
    assert sum(c == 1 for c in centres) < 10
    assert len({tuple(o) for o in offsets}) > 20
    assert np.abs(offsets).max() <= 5  # within the middle of the patch (crop 24, patch 16)


def test_each_foreground_class_is_sampled_equally_often() -> None:
    labels = np.zeros((64, 64, 64), dtype=np.int64)
    labels[:40] = 1  # a large organ
    labels[50:53, 50:53, 50:53] = 2  # a small one: 27 voxels
    case = {"image": labels[None].astype(np.float32), "label": labels[None]}
    task = dataclasses.replace(TASKS[TaskName.CT_ORGANS], patch_size=(8, 8, 8))
    task = dataclasses.replace(task, labels={1: "liver", 2: "spleen"})
    transforms = train_transforms(task, foreground_ratio=1.0, seed=3, flip_prob=0.0)
    small = sum(
        bool((np.asarray(_first(transforms(dict(case)))["label"]) == 2).any()) for _ in range(100)
    )
    # Chosen by voxel count, the small organ would be in about 27/40987 of the patches.
    assert 35 <= small <= 65
