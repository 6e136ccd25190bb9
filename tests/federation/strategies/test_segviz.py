"""SegViz selective aggregation on a real MultiTaskUNet state dict."""

from __future__ import annotations

import numpy as np
import pytest

from federation.strategies import Aggregator, aggregate_updates
from federation.updates import SiteUpdate, parameter_group
from training.models import ModelConfig, MultiTaskUNet


def _state(seed: int) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(seed)
    model = MultiTaskUNet(ModelConfig(heads={"liver": 2, "spleen": 2}, filters=(4, 8)))
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def states() -> list[dict[str, np.ndarray]]:
    return [_state(s) for s in range(4)]


def test_parameter_group_matches_the_model() -> None:
    model = MultiTaskUNet(
        ModelConfig(heads={"liver": 2, "spleen": 3}, filters=(4, 8), classifier_classes=2)
    )
    names = list(model.state_dict())
    assert {parameter_group(n) for n in names} == {
        "shared",
        "task:liver",
        "task:spleen",
        "task:lesion-class",
    }
    assert all(parameter_group(n) == model.group_of(n) for n in names)


def test_task_head_is_never_overwritten_by_sites_without_the_task(
    states: list[dict[str, np.ndarray]],
) -> None:
    reference, liver_site, spleen_site, unlabelled_site = states
    updates = [
        SiteUpdate("a", liver_site, 10, frozenset({"liver"})),
        SiteUpdate("b", spleen_site, 30, frozenset({"spleen"})),
        SiteUpdate("c", unlabelled_site, 50, frozenset()),
    ]
    merged = aggregate_updates(reference, updates)
    for name in reference:
        group = parameter_group(name)
        if group == "task:liver":
            np.testing.assert_array_equal(merged[name], liver_site[name])
        elif group == "task:spleen":
            np.testing.assert_array_equal(merged[name], spleen_site[name])
        elif np.issubdtype(reference[name].dtype, np.floating):
            expected = (
                10 * liver_site[name].astype(np.float64)
                + 30 * spleen_site[name]
                + 50 * unlabelled_site[name]
            ) / 90
            np.testing.assert_allclose(merged[name], expected, rtol=1e-6, atol=1e-7)

    # Whatever the sites without the task send, the head does not move.
    poisoned = {k: np.full_like(v, 1e6) for k, v in unlabelled_site.items()}
    updates[2] = SiteUpdate("c", poisoned, 50, frozenset())
    again = aggregate_updates(reference, updates)
    liver = [n for n in reference if parameter_group(n) == "task:liver"]
    assert liver
    for name in liver:
        np.testing.assert_array_equal(again[name], liver_site[name])

    # Conventional FL averages the same heads over everybody: the rule is what protects them.
    conventional = aggregate_updates(reference, updates, selective=False)
    assert any(not np.array_equal(conventional[n], liver_site[n]) for n in liver)


def test_head_without_any_labelled_site_keeps_the_global_block(
    states: list[dict[str, np.ndarray]],
) -> None:
    reference, a, b, _ = states
    updates = [SiteUpdate("a", a, 5, frozenset({"liver"})), SiteUpdate("b", b, 5, frozenset())]
    merged = aggregate_updates(reference, updates, method=Aggregator.MEDIAN)
    spleen = [n for n in reference if parameter_group(n) == "task:spleen"]
    for name in spleen:
        np.testing.assert_array_equal(merged[name], reference[name])
    assert set(merged) == set(reference)


def test_two_sites_with_a_task_share_its_head(states: list[dict[str, np.ndarray]]) -> None:
    reference, a, b, c = states
    updates = [
        SiteUpdate("a", a, 1, frozenset({"liver"})),
        SiteUpdate("b", b, 3, frozenset({"liver"})),
        SiteUpdate("c", c, 100, frozenset({"spleen"})),
    ]
    merged = aggregate_updates(reference, updates)
    for name in (n for n in reference if parameter_group(n) == "task:liver"):
        if np.issubdtype(reference[name].dtype, np.floating):
            expected = (a[name].astype(np.float64) + 3 * b[name]) / 4
            np.testing.assert_allclose(merged[name], expected, rtol=1e-6, atol=1e-7)
