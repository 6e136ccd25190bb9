"""Preprocessing shared by training and evaluation: orientation, spacing, intensity.

Every case is reoriented to LPS (so prone and feet-first acquisitions look the same to the
network), resampled to the task's spacing and normalised as the task says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.imaging.resample import Grid, resample_labels
from service.inference.manifest import Normalisation
from service.inference.preprocess import Normaliser, to_model_grid
from training.tasks import Task


@dataclass
class Prepared:
    """A case on the task grid: normalised image, labels and the grid they lie on."""

    image: np.ndarray
    labels: np.ndarray | None
    grid: Grid


def normalisation_of(task: Task) -> Normalisation:
    """The service's normalisation settings for ``task`` (what its bundle's manifest will say)."""
    low, high = task.intensity_range
    return Normalisation(kind=task.normalisation, low=low, high=high)


def normalise(image: np.ndarray, task: Task) -> np.ndarray:
    """Network input intensities for ``task``, float32: the service's own normaliser."""
    return Normaliser(normalisation_of(task))(image)


def prepare(
    image: np.ndarray, affine: np.ndarray, labels: np.ndarray | None, task: Task
) -> Prepared:
    """Reorient to LPS, resample to ``task.spacing`` and normalise, exactly as inference does."""
    resampled, grid = to_model_grid(np.asarray(image, dtype=np.float32), affine, task.spacing)
    out_labels = None
    if labels is not None:
        oriented, _ = grid.reorientation.apply(np.asarray(labels), affine)
        out_labels = resample_labels(oriented, grid.oriented, grid.model).astype(np.int64)
    return Prepared(normalise(resampled, task), out_labels, grid.model)
