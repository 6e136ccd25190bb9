"""Element-wise aggregation rules."""

from __future__ import annotations

import numpy as np
import pytest

from federation.strategies import Aggregator, aggregate_arrays


def test_weighted_mean() -> None:
    out = aggregate_arrays(
        [np.array([0.0, 2.0], np.float32), np.array([4.0, 6.0], np.float32)], [1, 3]
    )
    np.testing.assert_allclose(out, [3.0, 5.0])
    assert out.dtype == np.float32


def test_median_and_trimmed_mean_ignore_one_outlier() -> None:
    values = [np.array([1.0]), np.array([2.0]), np.array([3.0]), np.array([1000.0])]
    assert aggregate_arrays(values, [1] * 4, Aggregator.MEDIAN)[0] == pytest.approx(2.5)
    trimmed = aggregate_arrays(values, [1] * 4, Aggregator.TRIMMED_MEAN, trim_fraction=0.25)
    assert trimmed[0] == pytest.approx(2.5)
    assert aggregate_arrays(values, [1] * 4)[0] == pytest.approx(251.5)


def test_integer_buffers_are_not_averaged() -> None:
    out = aggregate_arrays([np.array(7, np.int64), np.array(9, np.int64)], [1, 1])
    assert int(out) == 7


def test_refusals() -> None:
    with pytest.raises(ValueError, match="shapes"):
        aggregate_arrays([np.zeros(2), np.zeros(3)], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        aggregate_arrays([np.zeros(2)], [0])
    with pytest.raises(ValueError, match="nothing"):
        aggregate_arrays([], [])
    with pytest.raises(ValueError):
        aggregate_arrays([np.zeros(2)], [1], "average")  # type: ignore[arg-type]
