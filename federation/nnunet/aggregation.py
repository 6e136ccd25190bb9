"""Aggregating nnU-Net state dicts through the federation's one round step.

An nnU-Net network (``PlainConvUNet`` and its kin) ends in one 1x1x1 convolution per decoder
stage, ``decoder.seg_layers.<i>``: the deep-supervision outputs, the last one at full
resolution. Output channel ``c`` of every one of them is label ``c`` of the federation's
``dataset.json`` (0 is background). For :func:`federation.round_step.round_step` the state dict
is split so each label's channels form their own arrays:

- ``decoder.seg_layers.<i>.weight@<label>`` and ``...bias@<label>``: group ``task:<label>``,
  averaged only over the sites that contour the label (selective aggregation), kept as they
  were when no site of the round contours it;
- everything else, the background channel included: group ``shared``, averaged over every site.

With ``RoundRules(selective=False)`` every array is averaged over every site (FedAvg weighted
by cases). The round step's update checks, robust aggregators, minimum-sites gate and DP apply
unchanged; the split is undone afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from federation.round_step import Aggregate, RoundOutcome, RoundRules, round_step
from federation.updates import SHARED_GROUP, Arrays, SiteUpdate

_OUTPUT = re.compile(r"(^|\.)seg_layers\.\d+\.(weight|bias)$")
_SEPARATOR = "@"
BACKGROUND = "background"


@dataclass(frozen=True)
class NnunetUpdate:
    """One site's round result: its state dict, its case count and the labels it contours."""

    site: str
    arrays: Arrays
    cases: int
    labels: frozenset[str]


def output_labels(dataset: Mapping[str, object]) -> list[str]:
    """Label names by output channel (``dataset.json``'s labels without ``ignore``)."""
    labels = dataset["labels"]
    assert isinstance(labels, Mapping)
    named = {int(v): str(k) for k, v in labels.items() if k != "ignore"}
    if sorted(named) != list(range(len(named))):
        raise ValueError(f"dataset.json labels {dict(labels)} are not numbered 0..N-1")
    return [named[i] for i in range(len(named))]


def is_output(name: str) -> bool:
    """Whether a state-dict entry is a segmentation output layer (one row per label)."""
    return _OUTPUT.search(name) is not None


def split_outputs(arrays: Arrays, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """The state dict with each output layer split into one array per label channel.

    Raises
    ------
    ValueError
        If an output layer's channel count differs from the number of labels.
    """
    out: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if _SEPARATOR in name:
            raise ValueError(f"state-dict entry {name!r} holds {_SEPARATOR!r}")
        if not is_output(name):
            out[name] = np.asarray(array)
            continue
        if array.shape[0] != len(labels):
            raise ValueError(
                f"{name} has {array.shape[0]} output channels, the plans' dataset.json "
                f"{len(labels)} labels ({', '.join(labels)})"
            )
        for channel, label in enumerate(labels):
            out[f"{name}{_SEPARATOR}{label}"] = np.array(array[channel : channel + 1], copy=True)
    return out


def join_outputs(arrays: Arrays, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Inverse of :func:`split_outputs`."""
    out: dict[str, np.ndarray] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for name, array in arrays.items():
        if _SEPARATOR not in name:
            out[name] = np.asarray(array)
            continue
        base = name.split(_SEPARATOR, 1)[0]
        parts.setdefault(base, [])
    for base in parts:
        out[base] = np.concatenate([arrays[f"{base}{_SEPARATOR}{label}"] for label in labels])
    return out


def group_of(name: str) -> str:
    """Parameter group of a split state-dict entry: ``task:<label>`` or ``shared``."""
    if _SEPARATOR not in name:
        return SHARED_GROUP
    label = name.split(_SEPARATOR, 1)[1]
    return SHARED_GROUP if label == BACKGROUND else f"task:{label}"


def aggregate(
    reference: Arrays,
    updates: Sequence[NnunetUpdate],
    labels: Sequence[str],
    rules: RoundRules,
    server_round: int,
) -> RoundOutcome:
    """The next global nnU-Net state dict from the round's site updates.

    Parameters
    ----------
    reference
        The global state dict sent at the start of the round.
    updates
        The sites' state dicts, case counts and contoured labels.
    labels
        Label names by output channel (:func:`output_labels` of the shared dataset.json).
    rules
        The run's round rules (``selective`` chooses selective aggregation or plain FedAvg).
    server_round
        1-based round number.
    """
    site_updates = [
        SiteUpdate(u.site, split_outputs(u.arrays, labels), u.cases, frozenset(u.labels))
        for u in updates
    ]
    outcome = round_step(
        split_outputs(reference, labels), site_updates, rules, server_round, group_of
    )
    return RoundOutcome(
        join_outputs(outcome.arrays, labels),
        outcome.accepted,
        outcome.rejected,
        outcome.aggregated,
    )


def round_aggregator(labels: Sequence[str]) -> Aggregate:
    """:func:`aggregate` as the ServerApp's round loop calls it, for these output labels.

    A site's update names the labels it contours as its tasks (the declaration it sends).
    """

    def step(
        reference: Arrays, updates: Sequence[SiteUpdate], rules: RoundRules, server_round: int
    ) -> RoundOutcome:
        nnunet = [NnunetUpdate(u.site, u.arrays, u.num_examples, u.tasks) for u in updates]
        return aggregate(reference, nnunet, labels, rules, server_round)

    return step
