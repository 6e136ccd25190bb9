"""The simulation behind ``fedseg experiment`` runs the deployment's round step."""

from __future__ import annotations

import numpy as np
import pytest

from federation.local import LocalTraining, get_arrays, model_config
from federation.privacy import PrivacySettings
from federation.round_step import RoundRules
from federation.simulation import FederatedPlan, SimSite, train_federated
from federation.sites import SiteCase
from training.models import build_model

CONFIG = model_config(["liver", "spleen"], (4, 8))


def _case(seed: int) -> SiteCase:
    """A 16³ volume with a liver and a spleen block."""
    rng = np.random.default_rng(seed)
    organs = np.zeros((16, 16, 16), np.int64)
    organs[2:8, 2:10, 3:12] = 1
    organs[9:14, 8:14, 4:10] = 2
    image = (organs * 0.8 + rng.normal(0, 0.3, organs.shape)).astype(np.float32)
    return SiteCase(image, organs, values={"liver": 1, "spleen": 2})


SITES = [
    SimSite("a", [_case(1), _case(2)], ("liver",)),
    SimSite("b", [_case(3), _case(4)], ("liver", "spleen")),
]
LOCAL = LocalTraining(steps=2, learning_rate=1e-2)


def _arrays(rules: RoundRules) -> dict[str, np.ndarray]:
    return get_arrays(train_federated(SITES, CONFIG, FederatedPlan(1, LOCAL, rules), seed=0))


def test_the_minimum_sites_gate_applies_in_simulation() -> None:
    initial = get_arrays(build_model(CONFIG, 0))
    kept = _arrays(RoundRules(min_sites=3))
    for name, array in initial.items():
        np.testing.assert_array_equal(kept[name], array)
    trained = _arrays(RoundRules(min_sites=2))
    weight = "encoder.levels.0.conv1.conv.weight"
    assert not np.array_equal(trained[weight], kept[weight])


def test_dp_noise_is_added_in_simulation() -> None:
    plain = _arrays(RoundRules())
    # A clipping norm far above the updates' norms clips nothing; noise std = 1e-3 * 1e3 / n.
    private = _arrays(RoundRules(privacy=PrivacySettings(clip=1e3, noise_multiplier=1e-3)))
    shared = [n for n in plain if n.startswith("encoder.") and plain[n].dtype.kind == "f"]
    noise = np.concatenate([(private[n] - plain[n]).ravel() for n in shared])
    assert noise.size > 1000
    assert float(noise.std()) == pytest.approx(1.0 / 2, rel=0.05)
    # Only site b labels the spleen: its head averages one update, so twice the noise.
    spleen = [n for n in plain if n.startswith("heads.spleen.") and plain[n].dtype.kind == "f"]
    head = np.concatenate([(private[n] - plain[n]).ravel() for n in spleen])
    assert float(head.std()) == pytest.approx(1.0, rel=0.1)
