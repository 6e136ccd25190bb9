"""DeLong's test for two correlated ROC AUCs (same cases, two scores).

The structural components follow DeLong, DeLong and Clarke-Pearson (1988, Biometrics 44:837);
they are computed with midranks as in Sun and Xu (2014, IEEE SPL 21:1389), which is exact and
O(n log n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.stats import rankdata


@dataclass(frozen=True)
class DeLongResult:
    """AUCs of two scores, their covariance and the two-sided test of equal AUC."""

    auc_a: float
    auc_b: float
    covariance: np.ndarray
    z: float
    p_value: float

    @property
    def difference(self) -> float:
        """``auc_a - auc_b``."""
        return self.auc_a - self.auc_b


def structural_components(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's placement values V10 (per positive) and V01 (per negative).

    ``scores`` has one row per classifier. Returns ``(aucs, v10, v01)`` with shapes ``(k,)``,
    ``(k, m)`` and ``(k, n)`` for ``m`` positives and ``n`` negatives.
    """
    truth = np.asarray(labels).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positives, negatives = scores[:, truth], scores[:, ~truth]
    m, n = positives.shape[1], negatives.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs at least one positive and one negative case")
    joint = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    pos_ranks = rankdata(positives, axis=1)
    neg_ranks = rankdata(negatives, axis=1)
    # V10: share of negatives below each positive; V01: share of positives above each negative.
    v10 = (joint[:, :m] - pos_ranks) / n
    v01 = 1.0 - (joint[:, m:] - neg_ranks) / m
    aucs = v10.mean(axis=1)
    return aucs, v10, v01


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> DeLongResult:
    """Test whether two scores of the same cases have the same ROC AUC.

    Raises
    ------
    ValueError
        If the inputs differ in length or a class is missing.
    """
    labels = np.asarray(labels)
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if not (labels.shape == scores_a.shape == scores_b.shape) or labels.ndim != 1:
        raise ValueError("labels and both score arrays must be 1-D and of one length")
    aucs, v10, v01 = structural_components(labels, np.vstack([scores_a, scores_b]))
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.cov(v10) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(v01) if n > 1 else np.zeros((2, 2))
    covariance = s10 / m + s01 / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = float(aucs[0] - aucs[1])
    if variance <= 0:
        # Identical or perfectly separated scores: no sampling variation to test against.
        z = 0.0 if difference == 0 else float(np.sign(difference) * np.inf)
        p_value = 1.0 if difference == 0 else 0.0
    else:
        z = difference / np.sqrt(variance)
        p_value = float(2 * stats.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), covariance, float(z), p_value)
