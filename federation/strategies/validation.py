"""Checks every update must pass before it is aggregated.

An update is rejected when it holds NaN or Inf, misses or reshapes a parameter, or when its
distance from the current global model is far outside the round's distribution: more than
``norm_ratio`` times the median distance of the *other* sites. Comparing with the others (rather
than with a median that includes the suspect) keeps the rule meaningful with only two sites.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from federation.updates import Arrays, SiteUpdate, delta_norm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateCheck:
    """Thresholds of :func:`check_updates`."""

    #: Reject an update whose norm exceeds this multiple of the other sites' median norm.
    norm_ratio: float = 10.0
    #: Norms below this are treated as equal to it (avoids dividing by an all-zero round).
    norm_floor: float = 1e-8

    def __post_init__(self) -> None:
        if self.norm_ratio <= 1:
            raise ValueError("norm_ratio must be greater than 1")
        if self.norm_floor <= 0:
            raise ValueError("norm_floor must be positive")


@dataclass(frozen=True)
class Rejection:
    """An update that was not aggregated, and why."""

    site: str
    reason: str


def _structural_problem(update: SiteUpdate, reference: Arrays) -> str | None:
    missing = sorted(set(reference) - set(update.arrays))
    if missing:
        return f"missing parameters {missing[:3]}"
    extra = sorted(set(update.arrays) - set(reference))
    if extra:
        return f"unknown parameters {extra[:3]}"
    for name, array in update.arrays.items():
        if array.shape != reference[name].shape:
            return f"{name} has shape {array.shape}, expected {reference[name].shape}"
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return f"{name} holds NaN or Inf"
    return None


def check_updates(
    updates: Sequence[SiteUpdate], reference: Arrays, check: UpdateCheck | None = None
) -> tuple[list[SiteUpdate], list[Rejection]]:
    """Split ``updates`` into accepted and rejected ones; every rejection is logged.

    ``reference`` is the global model the round started from.
    """
    check = check or UpdateCheck()
    sound: list[SiteUpdate] = []
    rejected: list[Rejection] = []
    for update in updates:
        problem = _structural_problem(update, reference)
        if problem is None:
            sound.append(update)
        else:
            rejected.append(Rejection(update.site, problem))
    norms = [max(delta_norm(u.arrays, reference), check.norm_floor) for u in sound]
    accepted = []
    for index, update in enumerate(sound):
        others = norms[:index] + norms[index + 1 :]
        limit = check.norm_ratio * float(np.median(others)) if others else np.inf
        if norms[index] > limit:
            rejected.append(
                Rejection(
                    update.site,
                    f"update norm {norms[index]:.4g} exceeds {check.norm_ratio:g} x the other "
                    f"sites' median {limit / check.norm_ratio:.4g}",
                )
            )
        else:
            accepted.append(update)
    for rejection in rejected:
        logger.warning("rejected update of site %s: %s", rejection.site, rejection.reason)
    return accepted, rejected
