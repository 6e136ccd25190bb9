"""Paired Wilcoxon signed-rank test between two methods scored on the same cases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class WilcoxonResult:
    """Two-sided signed-rank test of ``a - b``; ``statistic`` is the smaller rank sum."""

    statistic: float
    p_value: float
    n_pairs: int
    n_nonzero: int
    median_difference: float


def paired_wilcoxon(a: np.ndarray, b: np.ndarray) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of paired samples ``a`` and ``b``.

    Zero differences are dropped (Wilcoxon's convention). When every difference is zero the
    methods are indistinguishable and the p-value is 1.

    Raises
    ------
    ValueError
        If the samples differ in length, are empty or hold NaN.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("paired samples must be non-empty 1-D arrays of one length")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired samples hold NaN; score empty cases explicitly instead")
    differences = a - b
    nonzero = int(np.count_nonzero(differences))
    median = float(np.median(differences))
    if nonzero == 0:
        return WilcoxonResult(0.0, 1.0, int(a.size), 0, median)
    result = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(
        statistic=float(result.statistic),
        p_value=float(result.pvalue),
        n_pairs=int(a.size),
        n_nonzero=nonzero,
        median_difference=median,
    )
