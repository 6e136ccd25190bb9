"""What travels between the ServerApp and the ClientApps, built and read in one place.

The server sends a query (``config: {query: site, model: unet|nnunet}``), then per round a
train and an evaluate message holding the global arrays and a :class:`RoundConfig`. A site
replies with its declaration (``site``), and for training its arrays and metrics, for evaluation
its metrics. The key names are in :mod:`federation.message_keys`.

In nnU-Net mode a site's query reply also describes its dataset, and before round 1 the server
asks each site for its fingerprint summary (:data:`FINGERPRINT_MESSAGE`) and sends every site the
same plans (:data:`PLANS_MESSAGE`); the site echoes the SHA-256 of the plans text it received.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from pydantic import BaseModel, ConfigDict, ValidationError

from federation.errors import FederationError
from federation.message_keys import (
    ARRAYS_KEY,
    BINS_KEY,
    CONFIG_KEY,
    DATASET_KEY,
    FINGERPRINT_ACTION,
    FINGERPRINT_KEY,
    METRICS_KEY,
    MODEL_KEY,
    NUM_EXAMPLES_KEY,
    PLANS_ACTION,
    PLANS_KEY,
    PLANS_SHA256_KEY,
    POOLED_CASES_KEY,
    QUERY_KEY,
    SAMPLES_KEY,
    SITE_KEY,
    TRAIN_LOSS_KEY,
    TRAINER_KEY,
    TRAINING_CASES_KEY,
    VALIDATION_CASES_KEY,
    count_key,
    dice_key,
)
from federation.settings import ModelKind
from federation.updates import SiteUpdate

#: nnU-Net mode: the server's request for a site's fingerprint summary.
FINGERPRINT_MESSAGE = f"{MessageType.QUERY}.{FINGERPRINT_ACTION}"
#: nnU-Net mode: the shared plans; the site preprocesses its cases and echoes their SHA-256.
PLANS_MESSAGE = f"{MessageType.TRAIN}.{PLANS_ACTION}"


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class RoundConfig(BaseModel):
    """The server's instructions for one round (the ``config`` record of train/evaluate)."""

    model_config = ConfigDict(
        frozen=True, alias_generator=_kebab, validate_by_name=True, extra="forbid"
    )

    server_round: int
    #: The run's last round (nnU-Net's learning-rate schedule spans every round).
    num_rounds: int
    #: What the sites build: ``ModelConfig.as_dict()`` for the U-Net, the plans and the trainer
    #: for nnU-Net (:func:`nnunet_architecture`; :func:`model_kind_of` tells them apart); sent
    #: as JSON text.
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


def nnunet_architecture(plans: str, trainer: str) -> dict[str, object]:
    """The round config's architecture in nnU-Net mode: the plans text and the trainer.

    It is also the run state's ``model_config``, so every checkpoint carries the plans.
    """
    return {MODEL_KEY: str(ModelKind.NNUNET), TRAINER_KEY: trainer, PLANS_KEY: plans}


def nnunet_architecture_of(architecture: Mapping[str, object]) -> tuple[str, str]:
    """Plans text and trainer of an nnU-Net architecture (or checkpoint model config).

    Raises
    ------
    FederationError
        If it is not an nnU-Net architecture (a U-Net run's state, or another fedseg version).
    """
    if architecture.get(MODEL_KEY) != ModelKind.NNUNET or PLANS_KEY not in architecture:
        raise FederationError(
            "the model config is not an nnU-Net one (no plans): the run or checkpoint is a "
            "U-Net one; use a new state-dir for an nnU-Net run"
        )
    return str(architecture[PLANS_KEY]), str(architecture.get(TRAINER_KEY, ""))


def model_kind_of(architecture: Mapping[str, object]) -> ModelKind:
    """The model a round config's architecture or a checkpoint's model config is for."""
    return ModelKind.NNUNET if architecture.get(MODEL_KEY) == ModelKind.NNUNET else ModelKind.UNET


def query_content(model: ModelKind = ModelKind.UNET) -> RecordDict:
    """The server's query for every site's declaration (and, for nnU-Net, its dataset)."""
    return RecordDict({CONFIG_KEY: ConfigRecord({QUERY_KEY: SITE_KEY, MODEL_KEY: str(model)})})


def query_model_of(content: RecordDict) -> ModelKind:
    """The model a query is for.

    Raises
    ------
    FederationError
        If the server names a model this site's fedseg does not know.
    """
    value = str(content.config_records[CONFIG_KEY].get(MODEL_KEY, ModelKind.UNET))
    try:
        return ModelKind(value)
    except ValueError as exc:
        raise FederationError(
            f"the server asks for model {value!r}, which this site's fedseg does not know; "
            "the server and this site must run the same fedseg version"
        ) from exc


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


def declaration_content(
    name: str, tasks: tuple[str, ...], dataset: Mapping[str, object] | None = None
) -> RecordDict:
    """A site's reply to the query (with its dataset description in nnU-Net mode)."""
    content = RecordDict({SITE_KEY: site_record(name, tasks)})
    if dataset is not None:
        content[DATASET_KEY] = ConfigRecord({DATASET_KEY: json.dumps(dataset, sort_keys=True)})
    return content


def dataset_of(message: Message) -> dict[str, object]:
    """The dataset description in a site's nnU-Net query reply."""
    return _json_value(message.content, DATASET_KEY)


def _json_value(content: RecordDict, key: str) -> dict[str, object]:
    value = json.loads(str(content.config_records[key][key]))
    if not isinstance(value, dict):
        raise ValueError(f"the {key!r} record must hold a JSON object")
    return value


def fingerprint_request(pooled_cases: int, samples: int, bins: Mapping[str, float]) -> RecordDict:
    """The server's request for a site's fingerprint summary."""
    values = ConfigRecord(
        {
            POOLED_CASES_KEY: pooled_cases,
            SAMPLES_KEY: samples,
            BINS_KEY: json.dumps(dict(bins), sort_keys=True),
        }
    )
    return RecordDict({CONFIG_KEY: values})


def fingerprint_request_of(content: RecordDict) -> tuple[int, int, dict[str, float]]:
    """Pooled case count, intensity samples and bins of a fingerprint request."""
    record = content.config_records[CONFIG_KEY]
    bins = json.loads(str(record[BINS_KEY]))
    return _int(record[POOLED_CASES_KEY]), _int(record[SAMPLES_KEY]), dict(bins)


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def fingerprint_reply(
    name: str, tasks: tuple[str, ...], summary: Mapping[str, object]
) -> RecordDict:
    """A site's fingerprint summary (histograms and sums; no per-case value)."""
    text = json.dumps(summary, sort_keys=True)
    return RecordDict(
        {SITE_KEY: site_record(name, tasks), FINGERPRINT_KEY: ConfigRecord({FINGERPRINT_KEY: text})}
    )


def fingerprint_of(message: Message) -> dict[str, object]:
    """The fingerprint summary in a site's reply."""
    return _json_value(message.content, FINGERPRINT_KEY)


def plans_content(plans: str, trainer: str) -> RecordDict:
    """The shared plans, as one JSON text, and the trainer the sites prepare their cases for."""
    return RecordDict({CONFIG_KEY: ConfigRecord({PLANS_KEY: plans, TRAINER_KEY: trainer})})


def plans_of(content: RecordDict) -> tuple[str, str]:
    """The plans text of a plans message, exactly as received, and the trainer."""
    record = content.config_records[CONFIG_KEY]
    return str(record[PLANS_KEY]), str(record[TRAINER_KEY])


def plans_reply(
    name: str, tasks: tuple[str, ...], sha256: str, training: int, validation: int
) -> RecordDict:
    """A site's receipt: the SHA-256 of the plans text it received and its case split."""
    receipt = ConfigRecord(
        {
            PLANS_SHA256_KEY: sha256,
            TRAINING_CASES_KEY: training,
            VALIDATION_CASES_KEY: validation,
        }
    )
    return RecordDict({SITE_KEY: site_record(name, tasks), CONFIG_KEY: receipt})


def plans_receipt_of(message: Message) -> tuple[str, int, int]:
    """SHA-256 echoed by a site, and its training and validation case counts."""
    record = message.content.config_records[CONFIG_KEY]
    return (
        str(record[PLANS_SHA256_KEY]),
        _int(record[TRAINING_CASES_KEY]),
        _int(record[VALIDATION_CASES_KEY]),
    )


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
