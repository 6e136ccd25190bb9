"""Conversions between Flower records and fedseg's numpy updates."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

from federation.updates import SiteUpdate

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
SITE_KEY = "site"


def to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord holding ``arrays`` in their order."""
    return ArrayRecord(OrderedDict((k, Array(np.ascontiguousarray(v))) for k, v in arrays.items()))


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ArrayRecord."""
    return {name: array.numpy() for name, array in record.items()}


def site_record(name: str, tasks: tuple[str, ...]) -> ConfigRecord:
    """A site's declaration as it travels in replies."""
    return ConfigRecord({"name": name, "tasks": list(tasks)})


def site_of(message: Message) -> tuple[str, frozenset[str]]:
    """Site name and tasks declared in a reply."""
    record = message.content.config_records[SITE_KEY]
    tasks = record["tasks"]
    return str(record["name"]), frozenset(str(t) for t in tasks)  # type: ignore[union-attr]


def update_of(message: Message) -> SiteUpdate:
    """The :class:`SiteUpdate` in a training reply."""
    name, tasks = site_of(message)
    metrics = message.content.metric_records[METRICS_KEY]
    return SiteUpdate(
        site=name,
        arrays=from_record(message.content.array_records[ARRAYS_KEY]),
        num_examples=int(metrics["num-examples"]),  # type: ignore[arg-type]
        tasks=tasks,
    )
