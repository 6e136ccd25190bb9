"""nnU-Net state dicts through the one round step: FedAvg by cases, and selective by label.

The arrays are a real nnU-Net network's state dict (built by nnU-Net from the federation's tiny
plans, with deep supervision) and sites' updates to it; the aggregation itself is numpy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from federation.nnunet.aggregation import (
    NnunetUpdate,
    aggregate,
    group_of,
    is_output,
    join_outputs,
    output_labels,
    split_outputs,
)
from federation.round_step import RoundRules
from federation.updates import SHARED_GROUP
from training.nnunet.federated_plans import SharedPlans

BOTH = frozenset({"liver", "spleen"})
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "ignore": 4}


def _state_dict(plans: SharedPlans) -> dict[str, np.ndarray]:
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    torch.manual_seed(0)
    arch = plans.plans["configurations"]["3d_fullres"]["architecture"]
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        len(LABELS) - 1,
        deep_supervision=True,
    )
    return {k: v.detach().numpy().copy() for k, v in network.state_dict().items()}


def _moved(arrays: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A site's state dict after training: every float array moved."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
        if np.issubdtype(v.dtype, np.floating)
        else v
        for k, v in arrays.items()
    }


@pytest.fixture(scope="module")
def reference(tiny_plans: SharedPlans) -> dict[str, np.ndarray]:
    return _state_dict(tiny_plans)


def test_split_and_join_are_inverse(reference: dict[str, np.ndarray]) -> None:
    labels = output_labels({"labels": LABELS})
    assert labels == ["background", "liver", "spleen", "kidney_left"]
    outputs = [k for k in reference if is_output(k)]
    assert len(outputs) == 6  # weight and bias of three deep-supervision outputs
    split = split_outputs(reference, labels)
    assert group_of("decoder.seg_layers.2.weight@spleen") == "task:spleen"
    assert group_of("decoder.seg_layers.2.weight@background") == SHARED_GROUP
    assert group_of("encoder.stages.0.0.convs.0.conv.weight") == SHARED_GROUP
    joined = join_outputs(split, labels)
    assert set(joined) == set(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(joined[key], value)
    with pytest.raises(ValueError, match="output channels"):
        split_outputs(reference, labels[:3])


def test_a_label_no_site_contours_never_changes_its_output_channels(
    reference: dict[str, np.ndarray],
) -> None:
    labels = output_labels({"labels": LABELS})
    rules = RoundRules(min_sites=2, selective=True)
    current = reference
    for server_round in (1, 2):
        updates = [
            NnunetUpdate("a", _moved(current, server_round), 2, frozenset({"liver"})),
            NnunetUpdate(
                "b", _moved(current, 10 + server_round), 6, frozenset({"liver", "spleen"})
            ),
        ]
        outcome = aggregate(current, updates, labels, rules, server_round)
        assert outcome.aggregated and outcome.accepted == ("a", "b")
        new = outcome.arrays
        a, b = updates[0].arrays, updates[1].arrays
        for key in (k for k in reference if is_output(k)):
            # kidney_left (channel 3): no site contours it; it stays what it was at the start
            np.testing.assert_array_equal(new[key][3], reference[key][3])
            # spleen: only site b contours it
            np.testing.assert_allclose(new[key][2], b[key][2], rtol=1e-6)
            # liver and background: both sites, weighted by cases
            for channel in (0, 1):
                expected = (2 * a[key][channel] + 6 * b[key][channel]) / 8
                np.testing.assert_allclose(new[key][channel], expected, rtol=1e-5, atol=1e-6)
        body = "encoder.stages.0.0.convs.0.conv.weight"
        np.testing.assert_allclose(new[body], (2 * a[body] + 6 * b[body]) / 8, rtol=1e-5, atol=1e-6)
        current = new


def test_fedavg_averages_every_channel_over_every_site(reference: dict[str, np.ndarray]) -> None:
    labels = output_labels({"labels": LABELS})
    updates = [
        NnunetUpdate("a", _moved(reference, 1), 3, frozenset({"liver"})),
        NnunetUpdate("b", _moved(reference, 2), 1, frozenset({"spleen"})),
    ]
    outcome = aggregate(reference, updates, labels, RoundRules(selective=False), 1)
    key = "decoder.seg_layers.2.weight"
    a, b = updates[0].arrays[key], updates[1].arrays[key]
    np.testing.assert_allclose(outcome.arrays[key], (3 * a + b) / 4, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(outcome.arrays[key][3], reference[key][3])


def test_the_minimum_sites_gate_keeps_the_model(reference: dict[str, np.ndarray]) -> None:
    labels = output_labels({"labels": LABELS})
    updates = [NnunetUpdate("a", _moved(reference, 1), 3, frozenset({"liver"}))]
    outcome = aggregate(reference, updates, labels, RoundRules(min_sites=2), 1)
    assert not outcome.aggregated
    for key, value in reference.items():
        np.testing.assert_array_equal(outcome.arrays[key], value)
