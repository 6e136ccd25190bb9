import numpy as np
import pytest

from training.metrics.overlap import dice, jaccard


def _mask(shape: tuple[int, int, int], voxels: list[tuple[int, int, int]]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for voxel in voxels:
        mask[voxel] = True
    return mask


def test_hand_computed_overlap() -> None:
    # |P| = 3, |T| = 5, |P∩T| = 2, |P∪T| = 6
    truth = _mask((4, 4, 4), [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (1, 0, 0)])
    pred = _mask((4, 4, 4), [(0, 0, 0), (0, 0, 1), (3, 3, 3)])
    assert dice(pred, truth) == pytest.approx(4 / 8)
    assert jaccard(pred, truth) == pytest.approx(2 / 6)


def test_empty_masks_are_defined() -> None:
    empty = np.zeros((3, 3, 3), dtype=bool)
    one = _mask((3, 3, 3), [(1, 1, 1)])
    assert dice(empty, empty) == 1.0 and jaccard(empty, empty) == 1.0
    # false positive on an absent organ and a complete miss both score 0, never NaN
    assert dice(one, empty) == 0.0 and jaccard(one, empty) == 0.0
    assert dice(empty, one) == 0.0 and jaccard(empty, one) == 0.0


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))
