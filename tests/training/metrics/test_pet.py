import numpy as np
import pytest

from training.metrics.pet import pet_measures, pet_relative_errors


def test_relative_errors_hand_computed() -> None:
    affine = np.diag([2.0, 2.0, 2.5, 1.0])  # 10 mm³ voxels
    suv = np.ones((10, 10, 10), dtype=np.float32)
    truth = np.zeros(suv.shape, dtype=bool)
    truth[2:6, 2:6, 2:6] = True  # 64 voxels = 0.64 mL
    suv[truth] = 4.0
    suv[3, 3, 3] = 8.0
    pred = truth.copy()
    pred[6, 2:6, 2:6] = True  # 16 extra background voxels of SUV 1
    errors = pet_relative_errors(suv, affine, pred, truth)
    assert errors["suv_max"] == pytest.approx(0.0)
    assert errors["mtv_ml"] == pytest.approx(100 * 16 / 64)
    ref_mean = (63 * 4 + 8) / 64
    pred_mean = (63 * 4 + 8 + 16) / 80
    assert errors["suv_mean"] == pytest.approx(100 * (pred_mean - ref_mean) / ref_mean)
    ref_tlg = ref_mean * 0.64
    assert errors["tlg"] == pytest.approx(100 * (pred_mean * 0.8 - ref_tlg) / ref_tlg)


def test_empty_prediction_is_minus_100_percent_not_nan() -> None:
    affine = np.eye(4)
    suv = np.full((6, 6, 6), 3.0, dtype=np.float32)
    truth = np.zeros(suv.shape, dtype=bool)
    truth[1:4, 1:4, 1:4] = True
    errors = pet_relative_errors(suv, affine, np.zeros_like(truth), truth)
    assert all(v == pytest.approx(-100.0) for v in errors.values())
    assert pet_measures(suv, affine, truth)["mtv_ml"] == pytest.approx(27 / 1000)
    with pytest.raises(ValueError, match="empty"):
        pet_relative_errors(suv, affine, truth, np.zeros_like(truth))
