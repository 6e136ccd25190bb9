"""Every key of fedseg's Flower messages and of the metrics they carry, in one place.

Plain strings only (no Flower import), so the registry and the CLI can read metric names
without loading Flower. The keys of the round config are the fields of
:class:`federation.records.RoundConfig`, in kebab case.
"""

from __future__ import annotations

#: Names of the records inside a message's RecordDict.
ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
SITE_KEY = "site"
#: The server's query for declarations: ``{QUERY_KEY: SITE_KEY}`` in the config record.
QUERY_KEY = "query"
#: Metric names of the sites' replies (per-task metrics use :func:`dice_key`).
NUM_EXAMPLES_KEY = "num-examples"
TRAIN_LOSS_KEY = "train-loss"


_DICE = "dice/"
_COUNT = "n/"


def dice_key(task: str) -> str:
    """Metric name of a task's mean Dice (also the bundle's validation metric name)."""
    return f"{_DICE}{task}"


def count_key(task: str) -> str:
    """Metric name of the number of cases behind a task's Dice."""
    return f"{_COUNT}{task}"


def task_of_dice_key(key: str) -> str | None:
    """The task of a :func:`dice_key` metric name; None for other metrics."""
    return key.removeprefix(_DICE) if key.startswith(_DICE) else None
