import itertools

import numpy as np
import pytest
from scipy import stats

from training.stats import bootstrap_ci, delong_test, paired_wilcoxon
from training.stats.delong import structural_components


def test_wilcoxon_worked_example() -> None:
    # The worked example of the Wikipedia article "Wilcoxon signed-rank test" (10 pairs, one
    # zero difference dropped): W+ = 27, W- = 18, not significant.
    x2 = np.array([125, 115, 130, 140, 140, 115, 140, 125, 140, 135])
    x1 = np.array([110, 122, 125, 120, 140, 124, 123, 137, 135, 145])
    result = paired_wilcoxon(x2, x1)
    assert result.statistic == pytest.approx(18.0)
    assert result.n_nonzero == 9
    reference = stats.wilcoxon(x2, x1)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.p_value > 0.05


def test_wilcoxon_exact_small_sample_against_enumeration() -> None:
    a = np.array([0.91, 0.85, 0.88, 0.79, 0.93, 0.81, 0.87])
    b = np.array([0.86, 0.86, 0.80, 0.70, 0.90, 0.84, 0.75])
    d = a - b
    ranks = stats.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    # exact two-sided p: share of the 2^n sign patterns at least as extreme
    sums = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product([0, 1], repeat=len(d))
    ]
    centre = ranks.sum() / 2
    exact = np.mean([abs(s - centre) >= abs(w_plus - centre) for s in sums])
    assert paired_wilcoxon(a, b).p_value == pytest.approx(exact)


def test_wilcoxon_identical_methods() -> None:
    a = np.array([0.5, 0.6, 0.7])
    assert paired_wilcoxon(a, a.copy()).p_value == 1.0
    with pytest.raises(ValueError, match="NaN"):
        paired_wilcoxon(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))


def test_delong_hand_computed() -> None:
    # A separates perfectly (AUC 1); B ranks 4 of 6 pairs (AUC 2/3). Positive placement
    # values of B are [0, 1, 1] (variance 1/3), all others constant:
    # var(A - B) = (1/3) / 3 = 1/9, z = (1/3) / (1/3) = 1, p = 0.3173.
    labels = np.array([0, 0, 1, 1, 1])
    result = delong_test(
        labels, np.array([0.1, 0.2, 0.6, 0.7, 0.8]), np.array([0.3, 0.6, 0.2, 0.7, 0.9])
    )
    assert result.auc_a == pytest.approx(1.0)
    assert result.auc_b == pytest.approx(2 / 3)
    assert result.z == pytest.approx(1.0)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(1.0))


def test_delong_components_match_pairwise_definition() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.normal(labels, 1.0, (2, 40)), 1)
    aucs, v10, v01 = structural_components(labels, scores)
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    # psi(x, y) = 1 if x > y, 1/2 if equal (DeLong et al. 1988, eq. 2)
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    np.testing.assert_allclose(v10, psi.mean(axis=2), rtol=1e-12)
    np.testing.assert_allclose(v01, psi.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(aucs, psi.mean(axis=(1, 2)), rtol=1e-12)


def test_bootstrap_matches_scipy() -> None:
    x = np.array([0.81, 0.77, 0.9, 0.65, 0.72, 0.88, 0.93, 0.59, 0.7, 0.84])
    y = x - np.array([0.05, -0.02, 0.08, 0.01, 0.04, 0.0, 0.06, -0.03, 0.02, 0.05])
    ours = bootstrap_ci(x, y, statistic=lambda a, b: float(np.mean(a - b)), n_resamples=999, seed=3)
    reference = stats.bootstrap(
        (x, y),
        lambda a, b, axis=-1: np.mean(a - b, axis=axis),
        paired=True,
        n_resamples=999,
        method="percentile",
        rng=3,
    ).confidence_interval
    assert ours.low == pytest.approx(reference.low, rel=1e-12)
    assert ours.high == pytest.approx(reference.high, rel=1e-12)
    assert ours.estimate == pytest.approx(np.mean(x - y))
