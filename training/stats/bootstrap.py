"""Percentile bootstrap confidence intervals of a statistic of per-case values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    level: float


def bootstrap_ci(
    *samples: np.ndarray,
    statistic: Callable[..., float] = lambda x: float(np.mean(x)),
    level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``statistic(*samples)``.

    Several samples are resampled together (the same cases), which keeps paired data paired.
    Resampling draws case indices with ``numpy.random.default_rng(seed)``, the same draws as
    ``scipy.stats.bootstrap(..., paired=True, method="percentile", rng=seed)``.

    Raises
    ------
    ValueError
        If no sample is given, the samples differ in length or ``level`` is not in (0, 1).
    """
    if not samples:
        raise ValueError("at least one sample is required")
    arrays = [np.asarray(s, dtype=float) for s in samples]
    n = arrays[0].shape[0]
    if n == 0 or any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("bootstrap samples must be non-empty and of one length")
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError("n_resamples must be positive")
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, n, (n_resamples, n))
    values = np.array([statistic(*(a[row] for a in arrays)) for row in indices])
    alpha = (1 - level) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return ConfidenceInterval(float(statistic(*arrays)), float(low), float(high), level)
