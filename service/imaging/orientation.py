"""Exact reorientation of voxel arrays by axis permutation and flips.

Reorientation moves no voxel value, it only relabels axes, so a round trip is exact. Models are
trained and run in one canonical orientation (``LPS`` by default: i→left, j→posterior,
k→superior), whatever the patient position (head-first, feet-first, prone, supine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.dicom.geometry import axis_codes

_LETTER_AXIS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


@dataclass(frozen=True)
class Reorientation:
    """A permutation and flips that take an array from one orientation to another."""

    permutation: tuple[int, int, int]  # output axis n comes from input axis permutation[n]
    flips: tuple[bool, bool, bool]  # flip output axis n after permuting

    def apply(self, array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reorient ``array`` (extra trailing axes, e.g. channels, are kept) and its affine."""
        out = np.transpose(array, (*self.permutation, *range(3, array.ndim)))
        new_affine = affine.copy()
        new_affine[:, :3] = affine[:, list(self.permutation)]
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis=axis)
                n = out.shape[axis]
                new_affine[:3, 3] += new_affine[:3, axis] * (n - 1)
                new_affine[:3, axis] = -new_affine[:3, axis]
        return np.ascontiguousarray(out), new_affine

    def inverse(self) -> Reorientation:
        """The reorientation that undoes this one."""
        inverse_perm = [0, 0, 0]
        for out_axis, in_axis in enumerate(self.permutation):
            inverse_perm[in_axis] = out_axis
        flips = tuple(self.flips[inverse_perm[a]] for a in range(3))
        return Reorientation(
            permutation=(inverse_perm[0], inverse_perm[1], inverse_perm[2]),
            flips=(flips[0], flips[1], flips[2]),
        )


def plan_reorientation(affine: np.ndarray, target: str = "LPS") -> Reorientation:
    """How to permute and flip axes so that the voxel axes point along ``target``.

    Raises
    ------
    ValueError
        If ``target`` is not three letters naming each patient axis once (e.g. ``"RAS"``).
    """
    target = target.upper()
    if len(target) != 3 or sorted(_LETTER_AXIS[c][0] for c in target if c in _LETTER_AXIS) != [
        0,
        1,
        2,
    ]:
        raise ValueError(f"orientation {target!r} must name each patient axis once, e.g. 'LPS'")
    current = axis_codes(affine)
    permutation: list[int] = []
    flips: list[bool] = []
    for letter in target:
        patient_axis, sign = _LETTER_AXIS[letter]
        source = next(i for i, c in enumerate(current) if _LETTER_AXIS[c][0] == patient_axis)
        permutation.append(source)
        flips.append(_LETTER_AXIS[current[source]][1] != sign)
    return Reorientation(
        permutation=(permutation[0], permutation[1], permutation[2]),
        flips=(flips[0], flips[1], flips[2]),
    )


def reorient(
    array: np.ndarray, affine: np.ndarray, target: str = "LPS"
) -> tuple[np.ndarray, np.ndarray, Reorientation]:
    """Reorient to ``target``; returns the array, its affine and the step (for undoing it)."""
    step = plan_reorientation(affine, target)
    out, new_affine = step.apply(array, affine)
    return out, new_affine, step
