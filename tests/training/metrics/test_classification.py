import numpy as np
import pytest
from scipy import stats

from training.metrics.classification import classification_scores, roc_auc


def test_hand_computed_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # positive/negative pairs ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    result = classification_scores(labels, scores)
    assert result.accuracy == pytest.approx(0.75)
    assert result.sensitivity == pytest.approx(0.5)
    assert result.specificity == pytest.approx(1.0)


def test_hanley_mcneil_1982_rating_example() -> None:
    # Hanley & McNeil (1982) Radiology 143:29, Table 1: CT ratings 1-5 of 58 normal and
    # 51 abnormal cases; published AUC 0.893.
    normal = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    abnormal = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    labels = np.r_[np.zeros(58, int), np.ones(51, int)]
    assert roc_auc(labels, np.r_[normal, abnormal]) == pytest.approx(0.893, abs=5e-4)


def test_auc_matches_mann_whitney() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert roc_auc(labels, scores) == pytest.approx(expected, rel=1e-12)


def test_single_class_has_no_auc() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))
    assert classification_scores(np.array([1, 1]), np.array([0.2, 0.7])).auc is None
