"""Pixel-edge contours of a 2-D mask: outer boundaries, holes and islands as closed loops.

Loops run along pixel edges, i.e. through pixel corners ``(i ± 0.5, j ± 0.5)``, so no pixel
centre lies on a contour and rasterising the loops at pixel centres with the even-odd rule gives
back exactly the mask (the RTSTRUCT reader does that).
"""

from __future__ import annotations

import numpy as np

# Edge directions in corner-index space, counter-clockwise around foreground (j upwards).
_RIGHT, _UP, _LEFT, _DOWN = (1, 0), (0, 1), (-1, 0), (0, -1)
# At a vertex with two ways on, take the left turn first: that keeps the foreground pixel on
# the left tight and so separates regions that touch only at a corner into their own loops.
_TURN_ORDER = {
    _RIGHT: (_UP, _RIGHT, _DOWN),
    _UP: (_LEFT, _UP, _RIGHT),
    _LEFT: (_DOWN, _LEFT, _UP),
    _DOWN: (_RIGHT, _DOWN, _LEFT),
}


def boundary_edges(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Directed boundary edges ``(start, direction)`` of ``mask[i, j]`` in corner indices.

    Corner ``(a, b)`` is the point ``(a - 0.5, b - 0.5)`` in pixel coordinates.
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    inner = padded[1:-1, 1:-1]
    edges: list[tuple[tuple[int, int], tuple[int, int]]] = []
    # (neighbour offset, start corner offset, direction) for each side of a foreground pixel.
    sides = (
        ((0, -1), (0, 0), _RIGHT),  # below
        ((1, 0), (1, 0), _UP),  # right
        ((0, 1), (1, 1), _LEFT),  # above
        ((-1, 0), (0, 1), _DOWN),  # left
    )
    for (di, dj), (ci, cj), direction in sides:
        neighbour = padded[1 + di : padded.shape[0] - 1 + di, 1 + dj : padded.shape[1] - 1 + dj]
        ii, jj = np.nonzero(inner & ~neighbour)
        edges.extend(((int(i) + ci, int(j) + cj), direction) for i, j in zip(ii, jj, strict=True))
    return edges


def trace_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed loops of corner points ``(x, y)`` in pixel coordinates, collinear points removed.

    Each loop is an ``(n, 2)`` array with ``n >= 4`` and the first point not repeated at the end.
    Outer boundaries run counter-clockwise and holes clockwise (with ``j`` upwards).
    """
    outgoing: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for start, direction in boundary_edges(mask):
        outgoing.setdefault(start, []).append(direction)
    loops = []
    while outgoing:
        start = min(outgoing)
        point, heading = start, outgoing[start][0]
        visited: list[tuple[int, int]] = []
        while True:
            choices = outgoing[point]
            direction = next(d for d in _TURN_ORDER[heading] if d in choices)
            if not visited:
                direction = heading  # the first edge is the one picked above
            choices.remove(direction)
            if not choices:
                del outgoing[point]
            visited.append(point)
            heading = direction
            point = (point[0] + direction[0], point[1] + direction[1])
            if point == start:
                break
        loops.append(np.asarray(_drop_collinear(visited), dtype=np.float64) - 0.5)
    return loops


def _drop_collinear(corners: list[tuple[int, int]]) -> list[tuple[int, int]]:
    kept = []
    n = len(corners)
    for index, point in enumerate(corners):
        prev, nxt = corners[index - 1], corners[(index + 1) % n]
        cross = (point[0] - prev[0]) * (nxt[1] - point[1]) - (point[1] - prev[1]) * (
            nxt[0] - point[0]
        )
        if cross != 0:
            kept.append(point)
    return kept
