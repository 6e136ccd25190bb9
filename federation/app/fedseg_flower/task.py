"""Model and data of one site, as pure functions of the node config and the server's message."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import RecordDict

from federation.local import LocalTraining, evaluate_heads, get_arrays, set_arrays, train_heads
from federation.records import (
    RoundConfig,
    arrays_of,
    declaration_content,
    evaluate_reply,
    round_config_of,
    train_reply,
)
from federation.sites import SiteSpec, load_site_cases
from training.models import ModelConfig, MultiTaskUNet


def declaration(spec: SiteSpec) -> RecordDict:
    """The reply to the server's query: the site's name and tasks."""
    return declaration_content(spec.name, spec.tasks)


def _model(content: RecordDict) -> tuple[MultiTaskUNet, RoundConfig]:
    config = round_config_of(content)
    model = MultiTaskUNet(ModelConfig.from_dict(config.architecture))
    set_arrays(model, arrays_of(content))
    return model, config


def train(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Train the site's heads on its cases; reply with arrays, metrics and the declaration."""
    model, config = _model(content)
    heads = [t for t in spec.tasks if t in model.heads]
    cases = load_site_cases(spec)
    settings = LocalTraining(
        steps=config.local_steps,
        learning_rate=config.learning_rate,
        proximal_mu=config.proximal_mu,
        seed=config.seed,
    )
    loss = train_heads(model, cases, heads, settings)
    return train_reply(spec.name, spec.tasks, get_arrays(model), len(cases), loss)


def evaluate(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Dice of the global model's heads for the site's tasks on its cases."""
    model, _ = _model(content)
    heads = [t for t in spec.tasks if t in model.heads]
    cases = load_site_cases(spec)
    scores = evaluate_heads(model, cases, heads)
    return evaluate_reply(spec.name, spec.tasks, scores, len(cases))


def site_spec(node_config: Mapping[str, object]) -> SiteSpec:
    """The site's declaration from its node config."""
    return SiteSpec.from_node_config(node_config)
