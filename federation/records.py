"""What travels between the ServerApp and the ClientApps, built and read in one place.

The server sends a query (``config: {query: site}``), then per round a train and an evaluate
message holding the global arrays and a :class:`RoundConfig`. A site replies with its
declaration (``site``), and for training its arrays and metrics, for evaluation its metrics.
The key names are in :mod:`federation.message_keys`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from pydantic import BaseModel, ConfigDict, ValidationError

from federation.errors import FederationError
from federation.message_keys import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    NUM_EXAMPLES_KEY,
    QUERY_KEY,
    SITE_KEY,
    TRAIN_LOSS_KEY,
    count_key,
    dice_key,
)
from federation.updates import SiteUpdate


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class RoundConfig(BaseModel):
    """The server's instructions for one round (the ``config`` record of train/evaluate)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=_kebab, validate_by_name=True, extra="forbid"
    )

    server_round: int
    #: The model's architecture (``ModelConfig.as_dict()``), sent as JSON text.
    architecture: dict[str, object]
    local_steps: int
    learning_rate: float
    proximal_mu: float
    seed: int

    def to_record(self) -> ConfigRecord:
        """The ConfigRecord form (the architecture as JSON text)."""
        values = self.model_dump(by_alias=True)
        values["architecture"] = json.dumps(self.architecture)
        return ConfigRecord(values)

    @classmethod
    def from_record(cls, record: ConfigRecord) -> RoundConfig:
        """Parse a received config record.

        Raises
        ------
        FederationError
            If a key is missing or has the wrong type (server and site run different fedseg).
        """
        values = dict(record)
        try:
            values["architecture"] = json.loads(str(values.get("architecture", "")))
            return cls.model_validate(values)
        except (ValueError, ValidationError) as exc:
            raise FederationError(
                f"the server's round config is not understood ({exc}); the server and this "
                "site must run the same fedseg version"
            ) from exc


def query_content() -> RecordDict:
    """The server's query for every site's declaration."""
    return RecordDict({CONFIG_KEY: ConfigRecord({QUERY_KEY: SITE_KEY})})


def round_content(arrays: Mapping[str, np.ndarray], config: RoundConfig) -> RecordDict:
    """A train or evaluate message: the global arrays and the round's instructions."""
    return RecordDict({ARRAYS_KEY: to_record(arrays), CONFIG_KEY: config.to_record()})


def to_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ArrayRecord holding ``arrays`` in their order."""
    return ArrayRecord(OrderedDict((k, Array(np.ascontiguousarray(v))) for k, v in arrays.items()))


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ArrayRecord."""
    return {name: array.numpy() for name, array in record.items()}


def arrays_of(content: RecordDict) -> dict[str, np.ndarray]:
    """The arrays of a train/evaluate message or a training reply."""
    return from_record(content.array_records[ARRAYS_KEY])


def round_config_of(content: RecordDict) -> RoundConfig:
    """The round's instructions in a train/evaluate message."""
    return RoundConfig.from_record(content.config_records[CONFIG_KEY])


def site_record(name: str, tasks: tuple[str, ...]) -> ConfigRecord:
    """A site's declaration as it travels in replies."""
    return ConfigRecord({"name": name, "tasks": list(tasks)})


def declaration_content(name: str, tasks: tuple[str, ...]) -> RecordDict:
    """A site's reply to the query."""
    return RecordDict({SITE_KEY: site_record(name, tasks)})


def train_reply(
    name: str,
    tasks: tuple[str, ...],
    arrays: Mapping[str, np.ndarray],
    num_examples: int,
    loss: float,
) -> RecordDict:
    """A site's training reply: its arrays, metrics and declaration."""
    metrics: dict[str, int | float | list[int] | list[float]] = {
        NUM_EXAMPLES_KEY: num_examples,
        TRAIN_LOSS_KEY: loss,
    }
    return RecordDict(
        {
            ARRAYS_KEY: to_record(arrays),
            METRICS_KEY: MetricRecord(metrics),
            SITE_KEY: site_record(name, tasks),
        }
    )


def evaluate_reply(
    name: str, tasks: tuple[str, ...], scores: Mapping[str, list[float]], num_examples: int
) -> RecordDict:
    """A site's evaluation reply: mean Dice and case count per task it could score."""
    metrics: dict[str, int | float | list[int] | list[float]] = {NUM_EXAMPLES_KEY: num_examples}
    for task, values in scores.items():
        if values:
            metrics[dice_key(task)] = float(sum(values) / len(values))
            metrics[count_key(task)] = len(values)
    return RecordDict({METRICS_KEY: MetricRecord(metrics), SITE_KEY: site_record(name, tasks)})


def site_of(message: Message) -> tuple[str, frozenset[str]]:
    """Site name and tasks declared in a reply."""
    record = message.content.config_records[SITE_KEY]
    tasks = record["tasks"]
    return str(record["name"]), frozenset(str(t) for t in tasks)  # type: ignore[union-attr]


def metrics_of(message: Message) -> dict[str, float]:
    """The numeric metrics of a reply."""
    metrics = message.content.metric_records[METRICS_KEY]
    return {k: float(v) for k, v in metrics.items()}  # type: ignore[arg-type]


def update_of(message: Message) -> SiteUpdate:
    """The :class:`SiteUpdate` in a training reply."""
    name, tasks = site_of(message)
    metrics = metrics_of(message)
    return SiteUpdate(
        site=name,
        arrays=arrays_of(message.content),
        num_examples=int(metrics[NUM_EXAMPLES_KEY]),
        tasks=tasks,
    )
