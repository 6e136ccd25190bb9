"""Task normalisation keeps the structures a task segments visible to the network."""

from __future__ import annotations

import numpy as np

from training.data.preprocess import normalise
from training.phantoms.anatomy import AIR, CT_HU, FAT, MUSCLE
from training.phantoms.config import ORGAN_VALUES
from training.tasks import get_task

#: The noisiest phantom site's CT noise (HU, training/phantoms/sites.py).
MAX_NOISE_HU = 25.0


def test_ct_window_keeps_lungs_apart_from_air() -> None:
    task = get_task("ct-organs")
    low, high = task.intensity_range
    noise = MAX_NOISE_HU / (high - low)
    air, lung_left, lung_right = normalise(
        CT_HU[[AIR, ORGAN_VALUES["lung_left"], ORGAN_VALUES["lung_right"]]], task
    )
    # A soft-tissue window (-200..300 HU) clipped lungs and air both to 0.
    assert lung_left - air > 3 * noise
    assert lung_right - air > 3 * noise


def test_ct_window_keeps_soft_tissue_contrast() -> None:
    task = get_task("ct-organs")
    codes = [FAT, MUSCLE, *(ORGAN_VALUES[n] for n in ("liver", "kidney_left", "pancreas"))]
    values = normalise(CT_HU[codes], task)
    # None of them clipped: the window still tells fat, muscle and organs apart.
    assert np.all((values > 0) & (values < 1))
    assert len(np.unique(np.round(values, 3))) == len(codes)
