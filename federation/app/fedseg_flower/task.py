"""Model and data of one site, as pure functions of the node config and the server's message."""

from __future__ import annotations

import json
from collections.abc import Mapping

from flwr.app import ConfigRecord, MetricRecord, RecordDict

from federation.local import (
    LocalTraining,
    evaluate_heads,
    get_arrays,
    set_arrays,
    train_heads,
)
from federation.records import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    SITE_KEY,
    from_record,
    site_record,
    to_record,
)
from federation.sites import SiteSpec, load_site_cases
from training.models import ModelConfig, MultiTaskUNet


def declaration(spec: SiteSpec) -> RecordDict:
    """The reply to the server's query: the site's name and tasks."""
    return RecordDict({SITE_KEY: site_record(spec.name, spec.tasks)})


def _model(content: RecordDict) -> tuple[MultiTaskUNet, ConfigRecord]:
    config = content.config_records[CONFIG_KEY]
    model = MultiTaskUNet(ModelConfig.from_dict(json.loads(str(config["model-config"]))))
    set_arrays(model, from_record(content.array_records[ARRAYS_KEY]))
    return model, config


def train(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Train the site's heads on its cases; reply with arrays, metrics and the declaration."""
    model, config = _model(content)
    heads = [t for t in spec.tasks if t in model.heads]
    cases = load_site_cases(spec)
    settings = LocalTraining(
        steps=int(config["local-steps"]),  # type: ignore[arg-type]
        learning_rate=float(config["learning-rate"]),  # type: ignore[arg-type]
        proximal_mu=float(config["proximal-mu"]),  # type: ignore[arg-type]
        seed=int(config["seed"]),  # type: ignore[arg-type]
    )
    loss = train_heads(model, cases, heads, settings)
    return RecordDict(
        {
            ARRAYS_KEY: to_record(get_arrays(model)),
            METRICS_KEY: MetricRecord({"num-examples": len(cases), "train-loss": loss}),
            SITE_KEY: site_record(spec.name, spec.tasks),
        }
    )


def evaluate(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Dice of the global model's heads for the site's tasks on its cases."""
    model, _ = _model(content)
    heads = [t for t in spec.tasks if t in model.heads]
    cases = load_site_cases(spec)
    scores = evaluate_heads(model, cases, heads)
    metrics: dict[str, int | float | list[int] | list[float]] = {"num-examples": len(cases)}
    for head, values in scores.items():
        if values:
            metrics[f"dice/{head}"] = float(sum(values) / len(values))
            metrics[f"n/{head}"] = len(values)
    return RecordDict(
        {METRICS_KEY: MetricRecord(metrics), SITE_KEY: site_record(spec.name, spec.tasks)}
    )


def site_spec(node_config: Mapping[str, object]) -> SiteSpec:
    """The site's declaration from its node config."""
    return SiteSpec.from_node_config(node_config)
