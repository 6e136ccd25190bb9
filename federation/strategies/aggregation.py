"""Element-wise aggregation rules: weighted mean, coordinate-wise trimmed mean and median."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np


class Aggregator(StrEnum):
    """How the accepted updates of one parameter are combined."""

    #: FedAvg / FedProx: mean weighted by training examples.
    MEAN = "mean"
    #: Coordinate-wise trimmed mean (Yin et al. 2018): drop the extremes, average the rest.
    TRIMMED_MEAN = "trimmed-mean"
    #: Coordinate-wise median.
    MEDIAN = "median"


def aggregate_arrays(
    arrays: Sequence[np.ndarray],
    weights: Sequence[float],
    method: Aggregator = Aggregator.MEAN,
    trim_fraction: float = 0.2,
) -> np.ndarray:
    """Combine one parameter's values from several sites.

    Integer arrays (e.g. batch-norm counters) take the first site's value: they are not averaged.

    Raises
    ------
    ValueError
        If nothing is given, shapes differ, weights are not positive, or the trim is invalid.
    """
    if not arrays:
        raise ValueError("nothing to aggregate")
    if len(arrays) != len(weights):
        raise ValueError(f"{len(arrays)} arrays but {len(weights)} weights")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"sites sent different shapes for one parameter: {sorted(shapes)}")
    if any(w <= 0 for w in weights):
        raise ValueError("aggregation weights must be positive")
    if not 0 <= trim_fraction < 0.5:
        raise ValueError("trim fraction must lie in [0, 0.5)")
    first = arrays[0]
    if not np.issubdtype(first.dtype, np.floating):
        return first.copy()
    stack = np.stack([a.astype(np.float64) for a in arrays])
    method = Aggregator(method)
    if method is Aggregator.MEAN:
        w = np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * first.ndim)
        out = (stack * w).sum(0) / w.sum()
    elif method is Aggregator.MEDIAN:
        out = np.median(stack, axis=0)
    else:
        cut = int(np.floor(trim_fraction * len(arrays)))
        ordered = np.sort(stack, axis=0)
        out = ordered[cut : len(arrays) - cut].mean(0)
    return out.astype(first.dtype)
