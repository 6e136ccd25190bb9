"""From a source volume to network input, exactly as the manifest says.

The steps are small callables applied in order (MONAI's transform style): values → model grid
(canonical orientation and model spacing, in one resampling) → intensity normalisation.
:class:`ModelGrid` remembers the grids so that predictions can be mapped back onto the source
voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.dicom.volume import Volume
from service.imaging.orientation import Reorientation, plan_reorientation
from service.imaging.resample import Grid, grid_for_spacing, resample
from service.inference.manifest import Manifest, Normalisation, NormalisationKind


@dataclass(frozen=True)
class ModelGrid:
    """The grids between the source volume and the network input."""

    source: Grid  # the volume's own grid
    oriented: Grid  # the same voxels in the model's orientation
    reorientation: Reorientation
    model: Grid  # the model's spacing


@dataclass(frozen=True)
class PreparedInput:
    """Network input ``(C, X, Y, Z)`` on the model grid, and how to map back."""

    image: np.ndarray
    grid: ModelGrid
    values: np.ndarray  # source-grid values the model saw (HU, SUV, MR units), for measures


class Normaliser:
    """Intensity normalisation configured from the manifest; training uses the same class."""

    def __init__(self, config: Normalisation) -> None:
        self.config = config

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Normalise a volume of HU, SUV or MR values to network input (float32)."""
        cfg = self.config
        values = np.asarray(values, dtype=np.float32)
        if cfg.kind is NormalisationKind.CT_WINDOW:
            clipped = np.clip(values, cfg.low, cfg.high)
            return ((clipped - cfg.low) / (cfg.high - cfg.low)).astype(np.float32)
        if cfg.kind is NormalisationKind.SUV:
            # No clipping: how far above the range a lesion goes is information.
            return (values / (cfg.high - cfg.low)).astype(np.float32)
        above = values > values.min()
        foreground = values[above] if above.any() else values
        std = float(foreground.std())
        return ((values - float(foreground.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def model_values(volume: Volume, normalisation: Normalisation | None) -> np.ndarray:
    """The physical values a model works on: HU/MR units as read, PET converted to SUV.

    ``normalisation`` is None for an nnU-Net bundle, which sees the values as read.
    """
    if normalisation is not None and normalisation.kind is NormalisationKind.SUV:
        from service.pet.body_size import SuvType
        from service.pet.suv import to_suv

        suv, _ = to_suv(volume, SuvType(normalisation.suv_type))
        return suv
    return volume.array


def to_model_grid(
    values: np.ndarray,
    affine: np.ndarray,
    spacing: tuple[float, float, float],
    orientation: str = "LPS",
) -> tuple[np.ndarray, ModelGrid]:
    """Resample (linear) physical values onto a model's grid, in the model's orientation.

    The model grid is laid on the source reoriented to ``orientation`` (an exact relabelling of
    axes), but the values are sampled from the source grid directly: the same voxels, without a
    reoriented full-size copy. Training and inference both call this, so a network sees the
    same voxels in both.
    """
    source = Grid(shape=_shape3(values.shape), affine=affine)
    step = plan_reorientation(affine, orientation)
    oriented = reoriented_grid(source, step)
    model = grid_for_spacing(oriented, spacing)
    resampled = resample(values, source, model, order=1, fill=float(values.min()))
    grid = ModelGrid(source=source, oriented=oriented, reorientation=step, model=model)
    return resampled, grid


def reoriented_grid(grid: Grid, step: Reorientation) -> Grid:
    """The grid that :meth:`Reorientation.apply` gives an array on ``grid``, without the array."""
    shape = tuple(grid.shape[axis] for axis in step.permutation)
    affine = grid.affine.copy()
    affine[:, :3] = grid.affine[:, list(step.permutation)]
    for axis, flip in enumerate(step.flips):
        if flip:
            affine[:3, 3] += affine[:3, axis] * (shape[axis] - 1)
            affine[:3, axis] = -affine[:3, axis]
    return Grid(shape=_shape3(shape), affine=affine)


def prepare(volume: Volume, manifest: Manifest, values: np.ndarray | None = None) -> PreparedInput:
    """Reorient, resample and normalise a volume for ``manifest``'s network."""
    spacing, normalisation, _ = manifest.fedseg_recipe
    values = model_values(volume, normalisation) if values is None else values
    resampled, grid = to_model_grid(values, volume.affine, spacing, manifest.orientation)
    image = Normaliser(normalisation)(resampled)[None]
    return PreparedInput(image=image, grid=grid, values=values)


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (int(shape[0]), int(shape[1]), int(shape[2]))
