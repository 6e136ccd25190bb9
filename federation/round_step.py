"""One server round on the sites' updates: check, clip, aggregate, add noise, gate.

The deployed ServerApp (:mod:`federation.rounds`) and the in-process simulation that
``fedseg experiment`` runs (:mod:`federation.simulation`) both call :func:`round_step`, so the
experiments measure the algorithm a centre runs. It is numpy only: no Flower, no torch.

Order of a round:

1. every update is checked (finite, same parameters and shapes, norm not an outlier);
2. a round with fewer than ``min_sites`` accepted updates keeps the global model unchanged;
3. with central DP, each accepted update is clipped to the clipping norm (sites then count
   equally);
4. the updates are aggregated (FedAvg or a robust rule; SegViz selective aggregation keeps each
   task block to the sites that label that task);
5. with central DP, Gaussian noise is added to every parameter group that had contributors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from federation.privacy import PrivacySettings, add_noise, clip_update, group_counts
from federation.strategies import Aggregator, UpdateCheck, aggregate_updates, check_updates
from federation.updates import Arrays, SiteUpdate, parameter_group

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundRules:
    """How the server turns a round's updates into the next global model.

    Parameters
    ----------
    min_sites
        Fewest accepted updates a round needs to change the model (the deployment's default,
        2, unless the run says otherwise).
    aggregator, trim_fraction
        Element-wise rule (see :func:`federation.strategies.aggregate_arrays`).
    selective
        SegViz selective aggregation of task blocks; False averages every block over every site.
    check
        Thresholds of the update checks.
    privacy
        Central DP (clipping and Gaussian noise); None disables both.
    seed
        Seed of the DP noise; each round draws from ``(seed, server_round)``.
    """

    min_sites: int = 2
    aggregator: Aggregator = Aggregator.MEAN
    selective: bool = True
    trim_fraction: float = 0.2
    check: UpdateCheck = field(default_factory=UpdateCheck)
    privacy: PrivacySettings | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_sites < 1:
            raise ValueError(f"min_sites must be at least 1, got {self.min_sites}")
        if not 0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim fraction must lie in [0, 0.5), got {self.trim_fraction}")


@dataclass(frozen=True)
class RoundOutcome:
    """The next global model and what happened to each site's update."""

    arrays: dict[str, np.ndarray]
    #: Sites whose updates passed the checks, sorted.
    accepted: tuple[str, ...]
    #: Rejected sites and why.
    rejected: dict[str, str]
    #: False when the minimum-sites gate kept the previous model.
    aggregated: bool


#: A round's aggregation as the round loop calls it: :func:`round_step` for fedseg's U-Net,
#: :func:`federation.nnunet.aggregation.round_aggregator` for nnU-Net.
Aggregate = Callable[[Arrays, Sequence[SiteUpdate], RoundRules, int], RoundOutcome]


def round_step(
    reference: Arrays,
    updates: Sequence[SiteUpdate],
    rules: RoundRules,
    server_round: int,
    group_of: Callable[[str], str] = parameter_group,
) -> RoundOutcome:
    """The global model after one round, from the model it started at and the sites' updates.

    Parameters
    ----------
    reference
        The global arrays sent to the sites at the start of the round.
    updates
        What the sites sent back (in any order).
    rules
        Checks, gate, aggregation and privacy of the run.
    server_round
        1-based round number (seeds the DP noise).
    group_of
        Parameter group of an array name (``"shared"`` or ``"task:<name>"``); the default is
        fedseg's multi-task U-Net's, :mod:`federation.nnunet.aggregation` gives nnU-Net's.
    """
    accepted, rejections = check_updates(updates, reference, rules.check)
    names = tuple(sorted(u.site for u in accepted))
    rejected = {r.site: r.reason for r in rejections}
    if len(accepted) < rules.min_sites:
        logger.warning(
            "round %d: %d accepted updates, %d required; keeping the previous model",
            server_round,
            len(accepted),
            rules.min_sites,
        )
        kept = {name: np.array(array, copy=True) for name, array in reference.items()}
        return RoundOutcome(kept, names, rejected, aggregated=False)
    privacy = rules.privacy
    if privacy is not None:
        accepted = [clip_update(u, reference, privacy.clip) for u in accepted]
    merged = aggregate_updates(
        reference, accepted, rules.aggregator, rules.selective, rules.trim_fraction, group_of
    )
    if privacy is not None:
        counts = group_counts(accepted, list(reference), rules.selective, group_of)
        rng = np.random.default_rng([rules.seed, server_round])
        merged = add_noise(merged, counts, privacy, rng, group_of)
    logger.info("round %d: aggregated sites %s", server_round, list(names))
    return RoundOutcome(merged, names, rejected, aggregated=True)
