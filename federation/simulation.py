"""In-process federated training for experiments (sites simulated, no network).

Each round ends in :func:`federation.round_step.round_step`, the step the deployed ServerApp
(:mod:`federation.rounds`) runs: the same update checks, minimum-sites gate, clipping,
aggregation and DP noise, so an experiment measures the algorithm a centre runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from federation.local import LocalTraining, get_arrays, set_arrays, train_heads
from federation.round_step import RoundRules, round_step
from federation.sites import SiteCase
from federation.updates import SiteUpdate
from training.models import ModelConfig, MultiTaskUNet, build_model


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
    """Rounds, local training and the server's round rules of a simulated run."""

    rounds: int
    local: LocalTraining
    rules: RoundRules = field(default_factory=RoundRules)


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
        arrays = round_step(arrays, updates, plan.rules, server_round).arrays
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
