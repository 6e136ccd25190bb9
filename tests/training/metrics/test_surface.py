import numpy as np
import pytest

from training.metrics.segmentation import score_label
from training.metrics.surface import surface, surface_distances


def test_identical_masks_are_zero_apart() -> None:
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[2:6, 2:6, 2:6] = True
    result = surface_distances(mask, mask, (0.7, 0.7, 3.0))
    assert (result.hd95, result.mean, result.hausdorff, result.defined) == (0.0, 0.0, 0.0, True)


def test_surface_of_cube_is_its_shell() -> None:
    mask = np.zeros((7, 7, 7), dtype=bool)
    mask[1:6, 1:6, 1:6] = True
    assert surface(mask).sum() == 5**3 - 3**3


def test_distance_uses_anisotropic_spacing() -> None:
    truth = np.zeros((5, 5, 7), dtype=bool)
    pred = np.zeros_like(truth)
    truth[2, 2, 2] = True
    pred[2, 2, 4] = True  # two voxels apart along k, 3 mm each: 6 mm, not 2
    result = surface_distances(pred, truth, (1.0, 1.0, 3.0))
    assert result.hd95 == pytest.approx(6.0)
    assert result.mean == pytest.approx(6.0)
    pred_i = np.zeros_like(truth)
    pred_i[4, 2, 2] = True  # two voxels apart along i, 1 mm each
    assert surface_distances(pred_i, truth, (1.0, 1.0, 3.0)).hd95 == pytest.approx(2.0)


def test_hand_computed_hd95_and_msd() -> None:
    # truth {k=2, k=3}, pred {k=2}; k spacing 2.5 mm.
    # pred→truth: [0]; truth→pred: [0, 2.5]; 95th percentile (linear) of [0, 2.5] = 2.375.
    truth = np.zeros((5, 5, 6), dtype=bool)
    truth[2, 2, 2:4] = True
    pred = np.zeros_like(truth)
    pred[2, 2, 2] = True
    result = surface_distances(pred, truth, (1.0, 1.0, 2.5))
    assert result.hd95 == pytest.approx(2.375)
    assert result.mean == pytest.approx(2.5 / 3)
    assert result.hausdorff == pytest.approx(2.5)


def test_one_empty_mask_gives_worst_case_not_nan() -> None:
    empty = np.zeros((4, 5, 6), dtype=bool)
    pred = empty.copy()
    pred[1, 1, 1:3] = True
    diagonal = np.sqrt((4 * 1.0) ** 2 + (5 * 2.0) ** 2 + (6 * 3.0) ** 2)
    for a, b in ((pred, empty), (empty, pred)):
        result = surface_distances(a, b, (1.0, 2.0, 3.0))
        assert result.hd95 == pytest.approx(diagonal) and result.mean == pytest.approx(diagonal)
        assert not result.defined
    both = surface_distances(empty, empty, (1.0, 2.0, 3.0))
    assert both.defined and both.hd95 == 0.0


def test_false_positive_on_absent_organ_is_reported() -> None:
    truth = np.zeros((4, 5, 6), dtype=bool)
    pred = truth.copy()
    pred[1, 1, 1:3] = True
    scores = score_label(pred, truth, (1.0, 2.0, 3.0))
    assert scores.truth_empty and not scores.pred_empty
    assert scores.dice == 0.0 and scores.jaccard == 0.0
    assert scores.false_positive_mm3 == pytest.approx(2 * 6.0)
    assert scores.false_negative_mm3 == 0.0
    assert not scores.distances_defined
    assert not any(np.isnan(v) for v in scores.as_dict().values() if isinstance(v, float))


def test_spacing_must_match_dimensions() -> None:
    mask = np.ones((2, 2, 2), dtype=bool)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(mask, mask, (1.0, 1.0))
