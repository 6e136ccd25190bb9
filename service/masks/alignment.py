"""Placing mask voxels onto an image grid by exact index mapping.

A mask stored on the same lattice as its image (possibly cropped, transposed or flipped, as SEG
frames and NIfTI files often are) maps voxel to voxel with an integer index transform; this
module finds that transform and refuses (or lets the caller resample) when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IndexMap:
    """Integer map ``target = rotation @ source + offset`` between two voxel lattices."""

    rotation: np.ndarray  # (3, 3) signed permutation
    offset: np.ndarray  # (3,) integers
    misalignment: float  # largest distance of a mapped voxel from a target voxel, in voxels


def index_map(
    source_affine: np.ndarray, target_affine: np.ndarray, tolerance: float
) -> IndexMap | None:
    """The integer index map from ``source`` to ``target`` voxels, or None if the lattices differ.

    Parameters
    ----------
    source_affine, target_affine
        Voxel→patient affines (4×4).
    tolerance
        Largest allowed deviation, in target voxels, of any mapped axis or origin from an integer.
    """
    m = np.linalg.inv(target_affine) @ source_affine
    rotation = np.round(m[:3, :3])
    is_permutation = np.all(np.abs(rotation).sum(axis=0) == 1) and np.all(
        np.abs(rotation).sum(axis=1) == 1
    )
    if not is_permutation or np.max(np.abs(m[:3, :3] - rotation)) > tolerance / 10:
        return None
    offset = np.round(m[:3, 3])
    misalignment = float(np.max(np.abs(m[:3, 3] - offset)))
    if misalignment > tolerance:
        return None
    return IndexMap(
        rotation=rotation.astype(int), offset=offset.astype(int), misalignment=misalignment
    )


def place(
    values: np.ndarray, mapping: IndexMap, target_shape: tuple[int, int, int]
) -> tuple[np.ndarray, int]:
    """Scatter ``values`` (3-D, source voxel order) onto a zero array of ``target_shape``.

    Returns the target array and the number of non-zero source voxels that fell outside it.
    """
    out = np.zeros(target_shape, dtype=values.dtype)
    src = np.indices(values.shape).reshape(3, -1)
    dst = mapping.rotation @ src + mapping.offset[:, None]
    inside = np.all((dst >= 0) & (dst < np.asarray(target_shape)[:, None]), axis=0)
    flat = values.reshape(-1)
    lost = int(np.count_nonzero(flat[~inside]))
    out[tuple(dst[:, inside])] = flat[inside]
    return out, lost
