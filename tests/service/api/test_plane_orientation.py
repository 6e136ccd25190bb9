"""The viewer's plane layout: radiological convention, edge letters and plane positions."""

from __future__ import annotations

import numpy as np
import pytest

from service.api.plane_orientation import PlaneKind, direction_letters, plane_layout
from tests.result_series import GEOMETRIES, affine_for

AXIAL_MARKERS = {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def screen(plane: np.ndarray, right: tuple[int, int], down: tuple[int, int]) -> np.ndarray:
    """A stored (rows, columns) plane as the layout puts it on the screen (rows = screen y)."""
    image = plane if right[0] else plane.T  # screen x runs along stored columns, or rows
    if (right[0] or right[1]) < 0:
        image = image[:, ::-1]
    if (down[0] or down[1]) < 0:
        image = image[::-1, :]
    return image


@pytest.mark.parametrize("geometry", ["axial", "feet-first", "prone"])
def test_axial_planes_show_the_right_on_the_left_and_anterior_up(geometry: str) -> None:
    affine = affine_for(geometry)
    columns, rows = 24, 20
    layout = plane_layout(affine, 3)
    assert layout.kind is PlaneKind.AXIAL
    assert layout.markers == AXIAL_MARKERS
    # A marker at the patient's right-anterior corner of the plane: screen top left.
    i, j = np.meshgrid(np.arange(columns), np.arange(rows), indexing="xy")
    lps = affine[:3, 0, None, None] * i + affine[:3, 1, None, None] * j
    x, y = lps[0], lps[1]
    stored = ((x < np.percentile(x, 25)) & (y < np.percentile(y, 25))).astype(int)
    shown = screen(stored, layout.right, layout.down)
    top_left = shown[: shown.shape[0] // 2, : shown.shape[1] // 2]
    assert top_left.sum() == stored.sum() > 0


def test_native_order_is_kept_where_it_already_follows_the_convention() -> None:
    layout = plane_layout(affine_for("axial"), 2)
    assert (layout.right, layout.down) == ((1, 0), (0, 1))
    feet_first = plane_layout(affine_for("feet-first"), 2)
    assert (feet_first.right, feet_first.down) == ((-1, 0), (0, 1))
    prone = plane_layout(affine_for("prone"), 2)
    assert (prone.right, prone.down) == ((-1, 0), (0, -1))


def test_positions_are_plane_coordinates_towards_the_head() -> None:
    # Head first the stack climbs 3 mm a plane from z = 110; feet first it descends.
    head_first = plane_layout(affine_for("axial"), 3)
    assert head_first.positions_mm == pytest.approx((110, 113, 116))
    feet_first = plane_layout(affine_for("feet-first"), 3)
    assert feet_first.normal == pytest.approx((0, 0, 1))
    assert feet_first.positions_mm == pytest.approx((110, 107, 104))
    assert feet_first.as_dict()["normal_letter"] == "H"
    # Either way they are numbered from the head down, as OHIF numbers them.
    assert head_first.order == (2, 1, 0) and feet_first.order == (0, 1, 2)


def test_oblique_edges_name_every_direction_they_lean_towards() -> None:
    # 20 degrees about z, then -12 degrees about x (tests/result_series.py).
    layout = plane_layout(affine_for("oblique"), 2)
    assert layout.kind is PlaneKind.AXIAL
    assert layout.markers == {"left": "RA", "right": "LP", "top": "ALH", "bottom": "PRF"}
    _, directions = GEOMETRIES["oblique"]
    normal = np.cross(directions[:, 0], directions[:, 1])
    origin = affine_for("oblique")[:3, 3]
    assert layout.positions_mm[0] == pytest.approx(float(origin @ normal))


@pytest.mark.parametrize("transposed", [False, True])
def test_sagittal_planes_show_anterior_on_the_left_and_the_head_up(transposed: bool) -> None:
    affine = np.eye(4)
    along_row, down_column = ([0, 1, 0], [0, 0, -1]) if not transposed else ([0, 0, 1], [0, -1, 0])
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = along_row, down_column, [1, 0, 0]
    layout = plane_layout(affine, 2)
    assert layout.kind is PlaneKind.SAGITTAL
    assert layout.markers == {"left": "A", "right": "P", "top": "H", "bottom": "F"}
    # Stored rows run along the patient's height when transposed: the screen swaps the axes.
    assert (layout.right, layout.down) == (
        ((1, 0), (0, 1)) if not transposed else ((0, -1), (-1, 0))
    )
    assert layout.positions_mm == pytest.approx((0.0, 1.0))  # x, towards the patient's left
    assert layout.order == (0, 1)  # from the patient's right


def test_coronal_planes_show_the_right_on_the_left_and_the_head_up() -> None:
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = [-1, 0, 0], [0, 0, 1], [0, -1, 0]
    layout = plane_layout(affine, 2)
    assert layout.kind is PlaneKind.CORONAL
    assert layout.markers == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert (layout.right, layout.down) == ((-1, 0), (0, -1))
    assert layout.positions_mm == pytest.approx((0.0, -1.0))  # y, towards posterior
    assert layout.order == (1, 0)  # from the front


def test_direction_letters() -> None:
    assert direction_letters(np.array([1.0, 0.1, 0.0])) == "L"  # 5.7 degrees: still plain
    assert direction_letters(np.array([-1.0, -1.0, 0.0])) in {"RA", "AR"}
    assert direction_letters(np.array([0.0, 0.3, -1.0])) == "FP"
    with pytest.raises(ValueError, match="non-zero"):
        direction_letters(np.zeros(3))
    degenerate = np.eye(4)
    degenerate[:3, 1] = degenerate[:3, 0]
    with pytest.raises(ValueError, match="degenerate"):
        plane_layout(degenerate, 1)
