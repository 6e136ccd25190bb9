"""In-process federated training for experiments (sites simulated, no network).

The server's checks and aggregation rules are applied to sites held as lists of cases.
Deployment uses the same functions through the Flower app; see :mod:`federation.rounds`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from federation.local import LocalTraining, build_model, get_arrays, set_arrays, train_heads
from federation.sites import SiteCase
from federation.strategies import Aggregator, UpdateCheck, aggregate_updates, check_updates
from federation.updates import SiteUpdate
from training.models import ModelConfig, MultiTaskUNet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimSite:
    """A simulated site: its name, cases and the heads it holds labels for."""

    name: str
    cases: Sequence[SiteCase]
    tasks: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.cases or not self.tasks:
            raise ValueError(f"site {self.name} needs cases and tasks")


@dataclass(frozen=True)
class FederatedPlan:
    """Rounds and aggregation of a simulated run."""

    rounds: int
    local: LocalTraining
    selective: bool = True
    aggregator: Aggregator = Aggregator.MEAN
    check: UpdateCheck = field(default_factory=UpdateCheck)


def train_federated(
    sites: Sequence[SimSite], config: ModelConfig, plan: FederatedPlan, seed: int = 0
) -> MultiTaskUNet:
    """FedAvg-family training where each site trains the heads it labels."""
    model = build_model(config, seed)
    arrays = get_arrays(model)
    for server_round in range(1, plan.rounds + 1):
        updates = []
        for index, site in enumerate(sites):
            set_arrays(model, arrays)
            local = replace(plan.local, seed=plan.local.seed + 1000 * server_round + index)
            train_heads(model, site.cases, site.tasks, local)
            updates.append(
                SiteUpdate(site.name, get_arrays(model), len(site.cases), frozenset(site.tasks))
            )
        accepted, _ = check_updates(updates, arrays, plan.check)
        arrays = aggregate_updates(arrays, accepted, plan.aggregator, plan.selective)
        logger.debug("round %d aggregated %d sites", server_round, len(accepted))
    set_arrays(model, arrays)
    return model


def train_pooled(
    cases: Sequence[SiteCase],
    heads: Sequence[str],
    config: ModelConfig,
    local: LocalTraining,
    seed: int = 0,
) -> MultiTaskUNet:
    """Centralised training on pooled cases (each case's unannotated organs are background)."""
    model = build_model(config, seed)
    train_heads(model, cases, heads, local, unknown_as_background=True)
    return model
