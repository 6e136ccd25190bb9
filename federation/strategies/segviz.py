"""SegViz selective aggregation (Kanhere et al., 2023).

The shared representation block is aggregated over every site. Each task block is aggregated
only over the sites that hold that task's labels; when no site in the round holds them, the
global model keeps the block it sent. The global model therefore keeps every task's head, and a
site without a task can never overwrite that task's head with its untrained copy.

Conventional FL is the same call with ``selective=False``: every block over every site.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from federation.strategies.aggregation import Aggregator, aggregate_arrays
from federation.updates import Arrays, SiteUpdate, parameter_group, task_of_group


def contributors(
    group: str, updates: Sequence[SiteUpdate], selective: bool = True
) -> list[SiteUpdate]:
    """The updates that may change parameters of ``group``."""
    task = task_of_group(group)
    if task is None or not selective:
        return list(updates)
    return [u for u in updates if task in u.tasks]


def aggregate_updates(
    reference: Arrays,
    updates: Sequence[SiteUpdate],
    method: Aggregator = Aggregator.MEAN,
    selective: bool = True,
    trim_fraction: float = 0.2,
    group_of: Callable[[str], str] = parameter_group,
) -> dict[str, np.ndarray]:
    """The new global arrays from the round's accepted ``updates``.

    Parameters
    ----------
    reference
        The global arrays the round started from (kept where no site may contribute).
    updates
        Accepted site updates; each must hold every parameter of ``reference``.
    method, trim_fraction
        Element-wise rule, see :func:`aggregate_arrays`.
    selective
        SegViz rule for task blocks; False aggregates every block over every site.
    group_of
        Maps a parameter name to its group.
    """
    result: dict[str, np.ndarray] = {}
    for name, current in reference.items():
        sites = contributors(group_of(name), updates, selective)
        if not sites:
            result[name] = np.array(current, copy=True)
            continue
        result[name] = aggregate_arrays(
            [np.asarray(u.arrays[name]) for u in sites],
            [float(u.num_examples) for u in sites],
            method,
            trim_fraction,
        )
    return result
