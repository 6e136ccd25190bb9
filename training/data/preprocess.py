"""Preprocessing shared by training and evaluation: orientation, spacing, intensity.

Every case is reoriented to LPS (so prone and feet-first acquisitions look the same to the
network), resampled to the task's spacing and normalised as the task says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.imaging.orientation import reorient
from service.imaging.resample import Grid, grid_for_spacing, resample, resample_labels
from training.tasks import Normalisation, Task


@dataclass
class Prepared:
    """A case on the task grid: normalised image, labels and the grid they lie on."""

    image: np.ndarray
    labels: np.ndarray | None
    grid: Grid


def normalise(image: np.ndarray, task: Task) -> np.ndarray:
    """Network input intensities for ``task``, float32."""
    low, high = task.intensity_range
    image = np.asarray(image, dtype=np.float32)
    if task.normalisation is Normalisation.CT_WINDOW:
        return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)
    if task.normalisation is Normalisation.SUV:
        return (image / (high - low)).astype(np.float32)
    foreground = image[image > image.min()] if (image > image.min()).any() else image
    std = float(foreground.std())
    return ((image - float(foreground.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def prepare(
    image: np.ndarray, affine: np.ndarray, labels: np.ndarray | None, task: Task
) -> Prepared:
    """Reorient to LPS, resample to ``task.spacing`` and normalise."""
    image, lps_affine, _ = reorient(np.asarray(image), affine)
    source = Grid(shape=image.shape, affine=lps_affine)
    target = grid_for_spacing(source, task.spacing)
    resampled = resample(image.astype(np.float32), source, target, order=1, fill=float(image.min()))
    out_labels = None
    if labels is not None:
        oriented, _, _ = reorient(np.asarray(labels), affine)
        out_labels = resample_labels(oriented, source, target).astype(np.int64)
    return Prepared(normalise(resampled, task), out_labels, target)
