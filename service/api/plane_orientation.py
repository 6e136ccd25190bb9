"""How the dashboard lays a plane on the screen, the letters at its edges and where it lies.

A plane is drawn as radiologists read it, whatever the acquisition: an axial plane seen from
the feet (the patient's right on the viewer's left, anterior up), a coronal one seen from the
front (right on the left, head up), a sagittal one seen from the patient's left (anterior on
the left, head up). Head-first or feet-first, supine or prone, only the letters of an oblique
plane change, never the side a structure appears on. Native pixel order is not used: a prone
or feet-first series stored with ``ImageOrientationPatient`` ``-1 0 0 0 -1 0`` would otherwise
show the patient upside down or mirrored.

The layout is one of the eight flips and transpositions of the stored plane (pixels are never
resampled), the one whose screen axes lie closest to the convention's. The letters at each edge
name the patient directions of that edge's side, ``R/L``, ``A/P`` and ``H/F`` (head, feet),
largest component first, so an oblique edge reads e.g. ``LA``. Planes are numbered as OHIF and
most PACS number them, whatever order they were stored in: axial ones from the head down,
coronal ones from the front, sagittal ones from the patient's right.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: Letters of the LPS axes: towards +x, +y, +z, and towards -x, -y, -z.
_TOWARDS = ("L", "P", "H")
_AWAY = ("R", "A", "F")
#: A direction gets the letter of a further axis when it leans towards it more than this
#: (sin 10°): a plane tilted by less keeps its plain letters.
OBLIQUE_COMPONENT = math.sin(math.radians(10.0))


class PlaneKind(StrEnum):
    """The patient plane a slice lies closest to."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


#: Screen right and screen down as LPS directions, per plane (the radiological convention).
_CONVENTION = {
    PlaneKind.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    PlaneKind.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    PlaneKind.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
_KIND_BY_NORMAL_AXIS = (PlaneKind.SAGITTAL, PlaneKind.CORONAL, PlaneKind.AXIAL)


@dataclass(frozen=True)
class PlaneLayout:
    """Where a stack's planes go on the screen.

    ``right`` and ``down`` are the steps in stored pixel indices ``(column, row)`` that move one
    pixel towards the screen's right and bottom: ``(1, 0)`` is the stored order, ``(-1, 0)``
    mirrors the columns, ``(0, 1)`` puts the rows along the screen's width (a transposition).
    """

    kind: PlaneKind
    right: tuple[int, int]
    down: tuple[int, int]
    markers: dict[str, str]  # left, right, top, bottom
    normal: tuple[float, float, float]  # unit LPS direction the positions are measured along
    positions_mm: tuple[float, ...]  # each plane's position along ``normal``
    order: tuple[int, ...]  # the stored plane ``k`` shown as plane 1, 2... (head first...)

    def as_dict(self) -> dict[str, object]:
        """Plain data for the viewer API."""
        return {
            "plane": self.kind.value,
            "right": list(self.right),
            "down": list(self.down),
            "markers": dict(self.markers),
            "normal": list(self.normal),
            "normal_letter": direction_letters(np.asarray(self.normal))[0],
            "positions_mm": list(self.positions_mm),
            "order": list(self.order),
        }


def direction_letters(direction: np.ndarray) -> str:
    """The patient directions of an LPS vector, largest first (``"L"``, ``"AH"``...)."""
    unit = np.asarray(direction, dtype=np.float64)
    norm = float(np.linalg.norm(unit))
    if not norm > 0:
        raise ValueError("a direction needs a non-zero vector")
    unit = unit / norm
    letters: list[str] = []
    for axis in sorted(range(3), key=lambda a: -abs(unit[a])):
        if letters and abs(unit[axis]) < OBLIQUE_COMPONENT:
            break
        letters.append(_TOWARDS[axis] if unit[axis] > 0 else _AWAY[axis])
    return "".join(letters)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not norm > 0:
        raise ValueError("the affine has a degenerate axis")
    return vector / norm


def plane_layout(affine: np.ndarray, slices: int) -> PlaneLayout:
    """The screen layout, edge letters and plane positions of a volume's ``k`` planes.

    ``affine`` maps ``(i, j, k, 1)`` (``i`` along a stored row, ``j`` down the columns) to LPS
    mm. Positions are measured along the plane normal signed towards L, P or H (whichever it is
    closest to), from the LPS origin, as the plane's coordinate on that axis for a plane that is
    not oblique: an axial plane's position is its z.

    Raises
    ------
    ValueError
        If the in-plane axes are degenerate or parallel.
    """
    affine = np.asarray(affine, dtype=np.float64)
    columns, rows = _unit(affine[:3, 0]), _unit(affine[:3, 1])
    normal = _unit(np.cross(columns, rows))
    axis = int(np.argmax(np.abs(normal)))
    kind = _KIND_BY_NORMAL_AXIS[axis]
    normal = normal if normal[axis] > 0 else -normal
    want_right, want_down = (np.asarray(v) for v in _CONVENTION[kind])
    in_plane = {(1, 0): columns, (0, 1): rows}

    def score(choice: tuple[tuple[int, int], tuple[int, int]]) -> float:
        right, down = choice
        return float(_lps(right, in_plane) @ want_right + _lps(down, in_plane) @ want_down)

    candidates = []
    for (first, second), signs in itertools.product(
        (((1, 0), (0, 1)), ((0, 1), (1, 0))), itertools.product((1, -1), repeat=2)
    ):
        right = (first[0] * signs[0], first[1] * signs[0])
        down = (second[0] * signs[1], second[1] * signs[1])
        candidates.append((right, down))
    right, down = max(candidates, key=score)
    right_lps, down_lps = _lps(right, in_plane), _lps(down, in_plane)
    markers = {
        "left": direction_letters(-right_lps),
        "right": direction_letters(right_lps),
        "top": direction_letters(-down_lps),
        "bottom": direction_letters(down_lps),
    }
    origins = affine[:3, 3] + np.outer(np.arange(slices), affine[:3, 2])
    positions = tuple(float(p) for p in origins @ normal)
    # Positions grow towards L, P or H; planes are numbered from R, A, or H.
    towards_head = -1.0 if kind is PlaneKind.AXIAL else 1.0
    order = tuple(int(k) for k in np.argsort(np.asarray(positions) * towards_head, kind="stable"))
    return PlaneLayout(
        kind=kind,
        right=right,
        down=down,
        markers=markers,
        normal=(float(normal[0]) + 0.0, float(normal[1]) + 0.0, float(normal[2]) + 0.0),
        positions_mm=positions,
        order=order,
    )


def _lps(step: tuple[int, int], in_plane: dict[tuple[int, int], np.ndarray]) -> np.ndarray:
    """The LPS direction of a step in stored (column, row) indices."""
    base = (abs(step[0]), abs(step[1]))
    sign = step[0] + step[1]
    return sign * in_plane[base]
