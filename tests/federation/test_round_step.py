"""The one round step of simulation and deployment, on plain arrays."""

from __future__ import annotations

import numpy as np
import pytest

from federation.privacy import PrivacySettings
from federation.round_step import RoundRules, round_step
from federation.strategies import Aggregator
from federation.updates import SiteUpdate

#: A shared block, one head per organ, and an integer buffer, as a MultiTaskUNet names them.
REFERENCE = {
    "encoder.w": np.zeros(20_000, np.float32),
    "encoder.n": np.array(7),
    "heads.liver.out.w": np.zeros((2, 500), np.float32),
    "heads.spleen.out.w": np.zeros((2, 500), np.float32),
    "heads.kidney_left.out.w": np.full((2, 500), 0.25, np.float32),
}


def _shifted(arrays: dict[str, np.ndarray], shift: float) -> dict[str, np.ndarray]:
    """Every float array moved by ``shift`` (integer buffers as they were)."""
    return {
        k: (v + shift).astype(v.dtype) if v.dtype.kind == "f" else v.copy()
        for k, v in arrays.items()
    }


def _update(site: str, tasks: set[str], shift: float, examples: int = 1) -> SiteUpdate:
    return SiteUpdate(site, _shifted(REFERENCE, shift), examples, frozenset(tasks))


def test_gate_keeps_the_model_when_too_few_updates_are_accepted() -> None:
    broken = _update("b", {"spleen"}, 0.1)
    broken.arrays["encoder.w"][0] = np.nan  # type: ignore[index]
    updates = [_update("a", {"liver"}, 0.1), broken]
    outcome = round_step(REFERENCE, updates, RoundRules(min_sites=2), server_round=1)
    assert not outcome.aggregated
    assert outcome.accepted == ("a",) and "NaN" in outcome.rejected["b"]
    for name, array in REFERENCE.items():
        np.testing.assert_array_equal(outcome.arrays[name], array)
    # The same round with one required site aggregates the accepted update.
    passed = round_step(REFERENCE, updates, RoundRules(min_sites=1), server_round=1)
    assert passed.aggregated
    np.testing.assert_allclose(passed.arrays["encoder.w"], 0.1, rtol=1e-6)


def test_fedavg_weights_by_examples_and_keeps_integer_buffers() -> None:
    updates = [_update("a", {"liver"}, 0.1, examples=3), _update("b", {"liver"}, 0.5)]
    outcome = round_step(REFERENCE, updates, RoundRules(), server_round=1)
    np.testing.assert_allclose(outcome.arrays["encoder.w"], 0.2, rtol=1e-6)
    assert outcome.arrays["encoder.n"] == 7


def test_dp_clips_each_update_and_adds_noise_scaled_by_contributors() -> None:
    privacy = PrivacySettings(clip=1.0, noise_multiplier=0.5)
    updates = [_update("a", {"liver", "spleen"}, 1.0), _update("b", {"spleen"}, 1.0)]
    rules = RoundRules(privacy=privacy, seed=3)
    outcome = round_step(REFERENCE, updates, rules, server_round=2)
    # Every update's delta (norm >> 1) is clipped to norm 1 before averaging: the mean of the
    # shared block is the clipped shift, and what is left is the noise.
    norm = float(np.sqrt(sum(v.size for k, v in REFERENCE.items() if v.dtype.kind == "f")))
    noise = outcome.arrays["encoder.w"] - 1.0 / norm
    assert abs(float(noise.mean())) < 0.01
    assert float(noise.std()) == pytest.approx(0.5 * 1.0 / 2, rel=0.03)
    # The liver head has one contributor, so twice the noise of the spleen head's two.
    liver = outcome.arrays["heads.liver.out.w"] - 1.0 / norm
    assert float(liver.std()) == pytest.approx(0.5, rel=0.1)
    # Same seed and round: same noise; another round draws new noise.
    again = round_step(REFERENCE, updates, rules, server_round=2)
    np.testing.assert_array_equal(again.arrays["encoder.w"], outcome.arrays["encoder.w"])
    other = round_step(REFERENCE, updates, rules, server_round=3)
    assert not np.array_equal(other.arrays["encoder.w"], outcome.arrays["encoder.w"])


@pytest.mark.parametrize("aggregator", list(Aggregator))
@pytest.mark.parametrize("private", [False, True])
def test_a_label_no_site_contours_never_changes_its_output_channel(
    aggregator: Aggregator, private: bool
) -> None:
    privacy = PrivacySettings(clip=1.0, noise_multiplier=1.0) if private else None
    rules = RoundRules(aggregator=aggregator, privacy=privacy, seed=1)
    arrays: dict[str, np.ndarray] = dict(REFERENCE)
    for server_round in range(1, 4):
        # Every site trained (and so changed) its copy of every head, kidney included.
        updates = [
            SiteUpdate(site, _shifted(arrays, 0.3 * (i + 1)), 2, tasks)
            for i, (site, tasks) in enumerate(
                [("a", frozenset({"liver"})), ("b", frozenset({"spleen", "liver"}))]
            )
        ]
        outcome = round_step(arrays, updates, rules, server_round)
        assert outcome.aggregated
        arrays = outcome.arrays
    np.testing.assert_array_equal(
        arrays["heads.kidney_left.out.w"], REFERENCE["heads.kidney_left.out.w"]
    )
    assert not np.array_equal(arrays["heads.liver.out.w"], REFERENCE["heads.liver.out.w"])
    # Conventional FL (not selective) lets the sites' untrained copies overwrite it.
    plain = round_step(REFERENCE, updates, RoundRules(selective=False), 1)
    assert not np.array_equal(
        plain.arrays["heads.kidney_left.out.w"], REFERENCE["heads.kidney_left.out.w"]
    )


def test_rules_refuse_an_impossible_gate() -> None:
    with pytest.raises(ValueError, match="min_sites"):
        RoundRules(min_sites=0)
