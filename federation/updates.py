"""Model updates as the server sees them: named numpy arrays from one site.

Everything here is numpy only, so the aggregation rules can be tested without Flower or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

#: Parameter group of the representation block every site trains.
SHARED_GROUP = "shared"
#: Group of the lesion classification head (``task:lesion-class``).
CLASSIFIER_TASK = "lesion-class"

Arrays = Mapping[str, np.ndarray]


def task_of_group(group: str) -> str | None:
    """Task name of a ``"task:<name>"`` group; None for the shared group."""
    if group == SHARED_GROUP:
        return None
    if not group.startswith("task:"):
        raise ValueError(f"unknown parameter group {group!r}")
    return group.removeprefix("task:")


def parameter_group(name: str) -> str:
    """Group (``"shared"`` or ``"task:<name>"``) of a MultiTaskUNet state-dict entry.

    Mirrors ``training.models.MultiTaskUNet.group_of`` without importing torch, so the server's
    aggregation stays importable on a machine without a GPU stack.
    """
    if name.startswith("encoder."):
        return SHARED_GROUP
    if name.startswith("heads."):
        return f"task:{name.split('.')[1]}"
    if name.startswith("classifier."):
        return f"task:{CLASSIFIER_TASK}"
    raise KeyError(f"parameter {name!r} belongs to no group")


@dataclass(frozen=True)
class SiteUpdate:
    """What one site returned after local training.

    Parameters
    ----------
    site
        The site's declared name (from its node config), used in logs and the registry.
    arrays
        Updated parameters by state-dict name.
    num_examples
        Training examples behind the update (the averaging weight).
    tasks
        Task heads the site holds labels for; its copies of other heads are not aggregated.
    """

    site: str
    arrays: Arrays
    num_examples: int
    tasks: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.site:
            raise ValueError("an update needs the name of its site")
        if self.num_examples < 1:
            raise ValueError(f"site {self.site}: an update needs at least one training example")
        if not self.arrays:
            raise ValueError(f"site {self.site}: the update holds no arrays")


def delta_norm(update: Arrays, reference: Arrays) -> float:
    """L2 norm of ``update - reference`` over every floating-point array (float64 sum)."""
    total = 0.0
    for name, array in update.items():
        if not np.issubdtype(array.dtype, np.floating):
            continue
        diff = array.astype(np.float64) - np.asarray(reference[name], dtype=np.float64)
        total += float(np.sum(diff * diff))
    return float(np.sqrt(total))
