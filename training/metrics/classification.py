"""Binary classification scores: accuracy, sensitivity, specificity and ROC AUC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def _binary(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (negative, e.g. benign) or 1 (positive, malignant)")
    return labels.astype(bool)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney form; tied scores count one half).

    Raises
    ------
    ValueError
        If either class is absent: the AUC is undefined without positives and negatives.
    """
    truth = _binary(labels)
    scores = np.asarray(scores, dtype=float)
    if scores.shape != truth.shape:
        raise ValueError(f"{scores.shape[0]} scores for {truth.shape[0]} labels")
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative case")
    ranks = rankdata(scores)
    u_statistic = ranks[truth].sum() - n_pos * (n_pos + 1) / 2
    return float(u_statistic / (n_pos * n_neg))


@dataclass(frozen=True)
class ClassificationScores:
    """Scores of binary predictions; sensitivity/specificity are None without that class."""

    accuracy: float
    sensitivity: float | None
    specificity: float | None
    auc: float | None
    positives: int
    negatives: int


def classification_scores(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> ClassificationScores:
    """Score probabilities of the positive class against 0/1 labels at ``threshold``."""
    truth = _binary(labels)
    scores = np.asarray(scores, dtype=float)
    if scores.shape != truth.shape or truth.size == 0:
        raise ValueError("labels and scores must be non-empty and of one length")
    predicted = scores >= threshold
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    tp = int((predicted & truth).sum())
    tn = int((~predicted & ~truth).sum())
    return ClassificationScores(
        accuracy=(tp + tn) / truth.size,
        sensitivity=tp / n_pos if n_pos else None,
        specificity=tn / n_neg if n_neg else None,
        auc=roc_auc(truth.astype(int), scores) if n_pos and n_neg else None,
        positives=n_pos,
        negatives=n_neg,
    )
