"""Central differential privacy: fixed clipping of site updates plus Gaussian noise.

As Flower's ``DifferentialPrivacyServerSideFixedClipping``: every site's update (its parameters
minus the round's global parameters) is clipped to L2 norm ``clip``, sites count equally, and
Gaussian noise of standard deviation ``noise_multiplier * clip / n`` is added to the mean of the
``n`` contributors of each parameter group. The budget is reported with the Rényi-DP bound of
the Gaussian mechanism composed over rounds (every site takes part in every round, so no
subsampling amplification is claimed): ``eps = min_a T a / (2 s^2) + log(1/delta) / (a - 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from federation.updates import Arrays, SiteUpdate, delta_norm, parameter_group


@dataclass(frozen=True)
class PrivacySettings:
    """Clipping norm, noise multiplier and the delta the budget is reported at."""

    clip: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.clip <= 0 or self.noise_multiplier <= 0:
            raise ValueError("clip and noise multiplier must be positive")
        if not 0 < self.delta < 1:
            raise ValueError("delta must lie in (0, 1)")


def clip_update(update: SiteUpdate, reference: Arrays, clip: float) -> SiteUpdate:
    """The update with its delta scaled to L2 norm at most ``clip``; weight set to 1."""
    norm = delta_norm(update.arrays, reference)
    scale = min(1.0, clip / norm) if norm > 0 else 1.0
    arrays = {
        name: (reference[name] + scale * (array - reference[name])).astype(array.dtype)
        if np.issubdtype(array.dtype, np.floating)
        else array
        for name, array in update.arrays.items()
    }
    return SiteUpdate(update.site, arrays, 1, update.tasks)


def add_noise(
    aggregated: Arrays,
    contributors: dict[str, int],
    settings: PrivacySettings,
    rng: np.random.Generator,
    group_of: Callable[[str], str] = parameter_group,
) -> dict[str, np.ndarray]:
    """Gaussian noise on every float parameter whose group had contributors this round."""
    out = {}
    for name, array in aggregated.items():
        count = contributors.get(group_of(name), 0)
        if count and np.issubdtype(array.dtype, np.floating):
            std = settings.noise_multiplier * settings.clip / count
            out[name] = (array + rng.normal(0.0, std, array.shape)).astype(array.dtype)
        else:
            out[name] = np.array(array, copy=True)
    return out


def epsilon(rounds: int, noise_multiplier: float, delta: float) -> float:
    """(epsilon, delta)-DP after ``rounds`` Gaussian-mechanism rounds (RDP conversion)."""
    if rounds < 1:
        return 0.0
    orders = 1.0 + np.geomspace(1e-3, 1e4, 20000)
    rdp = rounds * orders / (2.0 * noise_multiplier**2)
    return float(np.min(rdp + np.log(1.0 / delta) / (orders - 1.0)))


def group_counts(
    updates: Sequence[SiteUpdate],
    names: Sequence[str],
    selective: bool,
    group_of: Callable[[str], str] = parameter_group,
) -> dict[str, int]:
    """How many updates contribute to each parameter group."""
    from federation.strategies.segviz import contributors

    groups = {group_of(n) for n in names}
    return {g: len(contributors(g, updates, selective)) for g in groups}
