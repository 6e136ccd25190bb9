"""Central DP: clipping, noise scale and the reported budget."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federation.privacy import PrivacySettings, add_noise, clip_update, epsilon, group_counts
from federation.updates import SiteUpdate, delta_norm

REFERENCE = {"encoder.w": np.zeros(1000, np.float64), "heads.liver.w": np.ones(10, np.float64)}


def test_clipping_bounds_the_update_norm() -> None:
    rng = np.random.default_rng(0)
    big = SiteUpdate(
        "a", {k: v + 5 * rng.standard_normal(v.shape) for k, v in REFERENCE.items()}, 7
    )
    clipped = clip_update(big, REFERENCE, clip=2.0)
    assert delta_norm(clipped.arrays, REFERENCE) == pytest.approx(2.0)
    assert clipped.num_examples == 1
    small = SiteUpdate("b", {k: v + 1e-3 for k, v in REFERENCE.items()}, 3)
    unchanged = clip_update(small, REFERENCE, clip=2.0)
    np.testing.assert_allclose(unchanged.arrays["encoder.w"], small.arrays["encoder.w"])


def test_noise_std_is_multiplier_times_clip_over_contributors() -> None:
    settings = PrivacySettings(clip=0.5, noise_multiplier=2.0)
    updates = [SiteUpdate(s, REFERENCE, 1, frozenset({"liver"})) for s in "ab"]
    updates.append(SiteUpdate("c", REFERENCE, 1, frozenset()))
    counts = group_counts(updates, list(REFERENCE), selective=True)
    assert counts == {"shared": 3, "task:liver": 2}
    big = {"encoder.w": np.zeros(200_000), "heads.liver.w": np.zeros(200_000)}
    noisy = add_noise(big, counts, settings, np.random.default_rng(1))
    assert noisy["encoder.w"].std() == pytest.approx(2.0 * 0.5 / 3, rel=0.01)
    assert noisy["heads.liver.w"].std() == pytest.approx(2.0 * 0.5 / 2, rel=0.01)


def test_epsilon_matches_the_closed_form_optimum() -> None:
    # min_a T a/(2 s^2) + L/(a-1) = T/(2 s^2) + sqrt(2 T L)/s with L = log(1/delta).
    for rounds, sigma in ((1, 1.0), (10, 2.0), (50, 5.0)):
        log_term = math.log(1e5)
        expected = rounds / (2 * sigma**2) + math.sqrt(2 * rounds * log_term) / sigma
        assert epsilon(rounds, sigma, 1e-5) == pytest.approx(expected, rel=1e-4)
    assert epsilon(0, 1.0, 1e-5) == 0.0
    assert epsilon(20, 1.0, 1e-5) > epsilon(10, 1.0, 1e-5)
