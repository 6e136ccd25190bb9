"""Threshold delineation of PET lesions: the reference methods a learned model is compared to.

* fixed fraction: each lesion of a volume of interest (VOI) keeps its voxels at or above 41 % of
  its own SUVmax (EANM guideline for tumour imaging 2.0);
* absolute: every voxel with SUV ≥ 2.5, optionally inside a VOI;
* background-adaptive: ``background + fraction × (SUVmax − background)`` per lesion, with the
  background the mean SUV of a given reference mask, or else of a shell around the lesion.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage

from service.pet.measures import Connectivity


class ThresholdMethod(StrEnum):
    """Threshold delineation baselines."""

    FIXED_FRACTION = "fixed-fraction"
    ABSOLUTE = "absolute"
    BACKGROUND_ADAPTIVE = "background-adaptive"


@dataclass(frozen=True)
class ThresholdSettings:
    """Parameters of the three methods, validated on construction."""

    fraction: float = 0.41  # of SUVmax, for the fixed-fraction method
    absolute_suv: float = 2.5
    adaptive_fraction: float = 0.5  # of the contrast above background
    shell_mm: float = 10.0  # background shell thickness when no background mask is given
    connectivity: Connectivity = Connectivity.FACE_EDGE_VERTEX

    def __post_init__(self) -> None:
        for name in ("fraction", "adaptive_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        if self.absolute_suv <= 0 or self.shell_mm <= 0:
            raise ValueError("absolute_suv and shell_mm must be positive")


def _components(voi: np.ndarray, connectivity: Connectivity) -> tuple[np.ndarray, int]:
    labels, count = ndimage.label(voi, structure=Connectivity(connectivity).structure)
    return labels, int(count)


def fixed_fraction(
    suv: np.ndarray, voi: np.ndarray, settings: ThresholdSettings | None = None
) -> np.ndarray:
    """Voxels of each VOI component at or above ``fraction`` of that component's SUVmax."""
    settings = settings or ThresholdSettings()
    labels, count = _components(np.asarray(voi, dtype=bool), settings.connectivity)
    out = np.zeros(suv.shape, dtype=bool)
    for number in range(1, count + 1):
        component = labels == number
        cut = settings.fraction * float(suv[component].max())
        out |= component & (suv >= cut)
    return out


def absolute(
    suv: np.ndarray, voi: np.ndarray | None = None, settings: ThresholdSettings | None = None
) -> np.ndarray:
    """Voxels with SUV at or above ``absolute_suv`` (inside ``voi`` when given)."""
    settings = settings or ThresholdSettings()
    out = np.asarray(suv >= settings.absolute_suv)
    return out & np.asarray(voi, dtype=bool) if voi is not None else out


def background_adaptive(
    suv: np.ndarray,
    voi: np.ndarray,
    affine: np.ndarray,
    background: np.ndarray | None = None,
    settings: ThresholdSettings | None = None,
) -> np.ndarray:
    """Per VOI component, voxels above ``bg + adaptive_fraction × (SUVmax − bg)``.

    Parameters
    ----------
    suv
        SUV image.
    voi
        Volume of interest; each connected component is one lesion.
    affine
        Voxel→patient affine (voxel size for the background shell).
    background
        Reference mask (e.g. liver or mediastinal blood pool); without it each component's
        background is the mean SUV of a ``shell_mm`` shell around it, outside the VOI.
    settings
        Threshold parameters (defaults when None).

    Raises
    ------
    ValueError
        If a background region is empty.
    """
    settings = settings or ThresholdSettings()
    voi = np.asarray(voi, dtype=bool)
    labels, count = _components(voi, settings.connectivity)
    fixed_bg = None
    if background is not None:
        reference = np.asarray(background, dtype=bool)
        if not reference.any():
            raise ValueError("background mask is empty")
        fixed_bg = float(suv[reference].mean())
    spacing = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    out = np.zeros(suv.shape, dtype=bool)
    for number in range(1, count + 1):
        component = labels == number
        bg = (
            fixed_bg
            if fixed_bg is not None
            else _shell_mean(suv, component, voi, spacing, settings)
        )
        top = float(suv[component].max())
        out |= component & (suv >= bg + settings.adaptive_fraction * (top - bg))
    return out


def _shell_mean(
    suv: np.ndarray,
    component: np.ndarray,
    voi: np.ndarray,
    spacing: np.ndarray,
    settings: ThresholdSettings,
) -> float:
    distance = ndimage.distance_transform_edt(~component, sampling=spacing)
    shell = (distance > 0) & (distance <= settings.shell_mm) & ~voi
    if not shell.any():
        raise ValueError("no background voxels around a lesion; pass a background mask")
    return float(suv[shell].mean())


def delineate(
    method: ThresholdMethod,
    suv: np.ndarray,
    voi: np.ndarray,
    affine: np.ndarray,
    settings: ThresholdSettings | None = None,
) -> np.ndarray:
    """Run one threshold method by name (for evaluation loops)."""
    method = ThresholdMethod(method)
    if method is ThresholdMethod.FIXED_FRACTION:
        return fixed_fraction(suv, voi, settings)
    if method is ThresholdMethod.ABSOLUTE:
        return absolute(suv, voi, settings)
    return background_adaptive(suv, voi, affine, None, settings)
