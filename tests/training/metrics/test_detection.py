import numpy as np
import pytest

from training.metrics.detection import DetectionResult, detect_lesions, detection_summary


def test_lesion_counts() -> None:
    truth = np.zeros((10, 10, 10), dtype=bool)
    truth[1:3, 1:3, 1:3] = True  # lesion A, found
    truth[7:9, 7:9, 7:9] = True  # lesion B, missed
    pred = np.zeros_like(truth)
    pred[2:4, 2:4, 2:4] = True  # overlaps A
    pred[0, 8, 0] = True  # false positive
    pred[1, 9, 1] = True  # touches the one above diagonally: the same component
    result = detect_lesions(pred, truth)
    assert result == DetectionResult(true_lesions=2, detected=1, false_positives=1)


def test_summary_pools_cases() -> None:
    summary = detection_summary(
        [DetectionResult(2, 1, 1), DetectionResult(1, 1, 0), DetectionResult(0, 0, 2)]
    )
    assert summary["sensitivity"] == pytest.approx(2 / 3)
    assert summary["false_positives_per_case"] == pytest.approx(1.0)


def test_invalid_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        DetectionResult(true_lesions=1, detected=2, false_positives=0)
