"""Pixel-edge contours of a 2-D mask: outer boundaries, holes and islands as closed loops.

Loops run along pixel edges, i.e. through pixel corners ``(i ± 0.5, j ± 0.5)``, so no pixel
centre lies on a contour and rasterising the loops at pixel centres with the even-odd rule gives
back exactly the mask (the RTSTRUCT reader does that).

The tracing is vectorised: every boundary edge gets an integer id (corner index times four plus
its direction), the successor of each edge is found with array look-ups, and only the walk
along the resulting cycles is a Python loop over plain integers.
"""

from __future__ import annotations

import numpy as np

# Edge directions in corner-index space, counter-clockwise around foreground (j upwards), in
# the order of their direction code 0..3.
_RIGHT, _UP, _LEFT, _DOWN = (1, 0), (0, 1), (-1, 0), (0, -1)
_DIRECTIONS = (_RIGHT, _UP, _LEFT, _DOWN)
# (neighbour offset, start corner offset) of each side of a foreground pixel whose edge runs in
# direction code 0..3: below (RIGHT), right (UP), above (LEFT), left (DOWN).
_SIDES = (((0, -1), (0, 0)), ((1, 0), (1, 0)), ((0, 1), (1, 1)), ((-1, 0), (0, 1)))


def boundary_edge_ids(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Sorted ids of the directed boundary edges of ``mask[i, j]``, and the corner row length.

    Corner ``(a, b)`` (the point ``(a - 0.5, b - 0.5)`` in pixel coordinates) has index
    ``a * row + b`` with ``row = mask.shape[1] + 1``; an edge starting there in direction code
    ``d`` (0 right, 1 up, 2 left, 3 down) has id ``4 * index + d``. Sorting the ids orders the
    edges by start corner, then direction.
    """
    inner = np.asarray(mask, dtype=bool)
    ni, nj = inner.shape
    padded = np.zeros((ni + 2, nj + 2), dtype=bool)
    padded[1:-1, 1:-1] = inner
    row = nj + 1
    parts = []
    for code, ((di, dj), (ci, cj)) in enumerate(_SIDES):
        neighbour = padded[1 + di : ni + 1 + di, 1 + dj : nj + 1 + dj]
        ii, jj = np.nonzero(inner & ~neighbour)
        parts.append(((ii.astype(np.int64) + ci) * row + (jj + cj)) * 4 + code)
    return np.sort(np.concatenate(parts)), row


def _successors(ids: np.ndarray, row: int) -> np.ndarray:
    """Position in ``ids`` of the edge that follows each edge along its loop.

    At a corner with two ways on (regions touching only at a corner) the left turn comes first:
    that keeps the foreground pixel on the left tight and so separates such regions into their
    own loops. A loop never turns back on itself, so left, straight or right always exists.
    """
    corner, code = np.divmod(ids, 4)
    step = np.array([row, 1, -row, -1], dtype=np.int64)
    end = corner + step[code]
    successor = np.full(len(ids), -1, dtype=np.int64)
    for turn in (1, 0, 3):  # left, straight, right
        candidate = end * 4 + (code + turn) % 4
        where = np.minimum(np.searchsorted(ids, candidate), len(ids) - 1)
        found = (ids[where] == candidate) & (successor < 0)
        successor[found] = where[found]
    if np.any(successor < 0):
        raise AssertionError("an edge of a pixel boundary has no successor")  # never for masks
    return successor


def trace_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed loops of corner points ``(x, y)`` in pixel coordinates, collinear points removed.

    Each loop is an ``(n, 2)`` array with ``n >= 4`` and the first point not repeated at the end.
    Outer boundaries run counter-clockwise and holes clockwise (with ``j`` upwards). Loops come
    in the order of their smallest corner, each starting there.
    """
    ids, row = boundary_edge_ids(mask)
    if len(ids) == 0:
        return []
    following = _successors(ids, row).tolist()
    visited = bytearray(len(ids))
    order: list[int] = []
    starts: list[int] = []
    for first in range(len(ids)):
        if visited[first]:
            continue
        starts.append(len(order))
        edge = first
        while not visited[edge]:
            visited[edge] = 1
            order.append(edge)
            edge = following[edge]
    walk = ids[np.asarray(order, dtype=np.int64)]
    corner, code = np.divmod(walk, 4)
    bounds = np.asarray([*starts, len(walk)], dtype=np.int64)
    previous = np.arange(-1, len(walk) - 1, dtype=np.int64)
    previous[bounds[:-1]] = bounds[1:] - 1  # a loop's first edge follows its last one
    # A corner is a vertex where the direction changes (a loop never reverses direction).
    vertex = code != code[previous]
    points = np.stack(np.divmod(corner, row), axis=1).astype(np.float64) - 0.5
    kept = np.cumsum(np.concatenate([[0], vertex]))[bounds]
    points = points[vertex]
    return [points[kept[n] : kept[n + 1]] for n in range(len(starts))]
