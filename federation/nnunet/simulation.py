"""Federated nnU-Net rounds in one process: the sites' rounds and the server's round step.

For tests and ``fedseg experiment``-style runs on one machine. The server plans once from the
sites' fingerprints (:mod:`federation.nnunet.plans`), initialises the network, and each round
sends the global weights to every site, which trains nnU-Net's trainer on its own cases
(:func:`training.nnunet.local_round.local_round`); the updates go through the same round step
as the deployed ServerApp (:func:`federation.nnunet.aggregation.aggregate`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from federation.nnunet.aggregation import NnunetUpdate, aggregate, output_labels
from federation.round_step import RoundRules
from training.nnunet.federated_model import initial_arrays
from training.nnunet.federated_plans import SharedPlans
from training.nnunet.local_round import RoundSettings, local_round, prepare_site

logger = logging.getLogger(__name__)


@dataclass
class RoundRecord:
    """One round: the sites' mean training loss and what the round step did."""

    server_round: int
    losses: dict[str, float]
    accepted: tuple[str, ...]
    rejected: dict[str, str]
    aggregated: bool


@dataclass
class FederatedRun:
    """The run's final global weights, their first value and its rounds."""

    arrays: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    mirror_axes: tuple[int, ...]
    rounds: list[RoundRecord] = field(default_factory=list)


def run_rounds(
    sites: Mapping[str, Path],
    shared: SharedPlans,
    settings: RoundSettings,
    rules: RoundRules,
    work: Path,
    after_round: Callable[[FederatedRun], None] | None = None,
) -> FederatedRun:
    """``settings.rounds`` rounds over the sites' ``dataset build --format nnunet`` folders.

    ``after_round`` is called with the run after each round (its last record is that round's),
    e.g. to validate the global model on held-out patients.
    """
    labels = output_labels(shared.dataset)
    prepared = {
        name: prepare_site(folder, shared, work / name, settings) for name, folder in sites.items()
    }
    initial = initial_arrays(shared, settings.seed, settings.trainer)
    run = FederatedRun(arrays=initial, initial=initial, mirror_axes=())
    for server_round in range(1, settings.rounds + 1):
        results = {
            name: local_round(site, run.arrays, settings, server_round)
            for name, site in prepared.items()
        }
        updates = [
            NnunetUpdate(name, r.arrays, r.cases, prepared[name].labels)
            for name, r in results.items()
        ]
        outcome = aggregate(run.arrays, updates, labels, rules, server_round)
        run.arrays = outcome.arrays
        run.mirror_axes = next(iter(results.values())).mirror_axes
        run.rounds.append(
            RoundRecord(
                server_round,
                {name: r.loss for name, r in results.items()},
                outcome.accepted,
                outcome.rejected,
                outcome.aggregated,
            )
        )
        logger.info("round %d: %s", server_round, run.rounds[-1])
        if after_round is not None:
            after_round(run)
    return run
