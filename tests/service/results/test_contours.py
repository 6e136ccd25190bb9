import numpy as np
import pytest

from service.masks.rtstruct_reader import rasterise_polygon
from service.results.contours import trace_loops


def _rasterise(loops: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for loop in loops:
        out ^= rasterise_polygon(loop[:, 0], loop[:, 1], shape)
    return out


def test_single_pixel_is_a_square_through_its_corners() -> None:
    mask = np.zeros((3, 3), bool)
    mask[1, 1] = True
    (loop,) = trace_loops(mask)
    assert sorted(map(tuple, loop.tolist())) == [(0.5, 0.5), (0.5, 1.5), (1.5, 0.5), (1.5, 1.5)]


def test_ring_gives_an_outer_loop_and_a_hole() -> None:
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[2:5, 2:5] = False
    loops = trace_loops(mask)
    assert len(loops) == 2
    assert all(len(loop) == 4 for loop in loops)  # collinear corners dropped
    assert np.array_equal(_rasterise(loops, mask.shape), mask)


def test_pixels_touching_at_a_corner_become_separate_islands() -> None:
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[1, 1] = True
    assert len(trace_loops(mask)) == 2


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_rasterise_back_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        mask = rng.random((13, 9)) < rng.uniform(0.2, 0.8)
        loops = trace_loops(mask)
        assert all(len(loop) >= 4 for loop in loops)  # never a degenerate polygon
        assert np.array_equal(_rasterise(loops, mask.shape), mask)
