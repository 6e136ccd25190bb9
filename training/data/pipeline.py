"""MONAI patch pipeline: padding, foreground-weighted patch sampling and augmentation.

Orientation is canonical (LPS) after :func:`training.data.preprocess.prepare`, for training and
for inference alike, so prone and feet-first studies reach the network already the right way
round. The flips below only imitate inputs whose orientation went wrong (a flip of the
anterior-posterior axis, or of the superior-inferior axis) and are therefore rare: each axis flips
with probability ``flip_prob``. A network that saw every patch flipped half the time along each
axis would have to segment four orientations that inference never shows it, which (with lungs
above the kidneys, and left and right told apart only by position) costs much of a small model's
capacity. Tasks with left/right labels are never flipped left-right, which would swap those labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai import transforms as mt
from monai.data import DataLoader, Dataset, list_data_collate

from training.data.preprocess import Prepared
from training.tasks import Task

KEYS = ("image", "label")


def _flip_axes(task: Task) -> tuple[int, ...]:
    lateral = any(n.endswith(("_left", "_right")) for n in task.labels.values())
    return (1, 2) if lateral else (0, 1, 2)


#: Probability that a training patch is flipped along each orientation axis.
FLIP_PROB = 0.1


def train_transforms(
    task: Task, foreground_ratio: float, seed: int, flip_prob: float = FLIP_PROB
) -> mt.Compose:
    """Random patch sampling and augmentation of dicts with ``image`` and ``label``."""
    if not 0 <= foreground_ratio <= 1:
        raise ValueError("foreground ratio must lie in [0, 1]")
    if not 0 <= flip_prob <= 1:
        raise ValueError("flip probability must lie in [0, 1]")
    keys = list(KEYS)
    # A voxel of a randomly chosen class (background with probability 1 - foreground_ratio,
    # each foreground class equally often: small organs are sampled as often as the liver) is
    # the centre of a crop half as large again as the patch; the patch is then cut from a random
    # place in that crop, so the chosen structure is not always in the patch's centre (a network
    # that always sees its target in the middle learns that position instead of the target).
    crop = tuple(p + p // 2 for p in task.patch_size)
    n = task.num_classes
    ratios = [1.0 - foreground_ratio] + [foreground_ratio / (n - 1)] * (n - 1)
    steps: list[mt.Transform] = [
        mt.SpatialPadd(keys, spatial_size=crop),
        mt.RandCropByLabelClassesd(
            keys,
            label_key="label",
            spatial_size=crop,
            ratios=ratios,
            num_classes=n,
            num_samples=1,
            allow_smaller=False,
            warn=False,
        ),
        mt.RandSpatialCropd(keys, roi_size=task.patch_size, random_size=False),
    ]
    steps += [mt.RandFlipd(keys, prob=flip_prob, spatial_axis=axis) for axis in _flip_axes(task)]
    steps += [
        mt.RandAffined(
            keys,
            prob=0.2,
            rotate_range=(np.pi / 12,) * 3,
            scale_range=(0.15,) * 3,
            mode=("bilinear", "nearest"),
            padding_mode="border",
        ),
        mt.RandScaleIntensityd("image", factors=0.1, prob=0.5),
        mt.RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        mt.RandGaussianNoised("image", prob=0.15, std=0.05),
        mt.EnsureTyped(keys, track_meta=False),
    ]
    compose = mt.Compose(steps)
    compose.set_random_state(seed=seed)
    return compose


def as_items(prepared: Sequence[Prepared], annotated: Sequence[np.ndarray]) -> list[dict]:
    """MONAI dict items: channel-first image and labels, and the annotated-class mask."""
    items = []
    for case, mask in zip(prepared, annotated, strict=True):
        if case.labels is None:
            raise ValueError("training cases need labels")
        items.append(
            {
                "image": case.image[None].astype(np.float32),
                "label": case.labels[None].astype(np.int64),
                "annotated": torch.as_tensor(mask, dtype=torch.bool),
            }
        )
    return items


def patch_loader(
    items: list[dict],
    task: Task,
    batch_size: int,
    foreground_ratio: float,
    seed: int,
    flip_prob: float = FLIP_PROB,
) -> DataLoader:
    """An endless-by-reshuffling loader of augmented patches (single process, seeded)."""
    dataset = Dataset(items, transform=train_transforms(task, foreground_ratio, seed, flip_prob))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=0,
        collate_fn=list_data_collate,
        generator=generator,
        drop_last=len(items) >= batch_size,
    )
