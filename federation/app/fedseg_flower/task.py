"""Model and data of one site, as pure functions of the node config and the server's message.

The U-Net's functions are here; nnU-Net's are :mod:`federation.nnunet.site`, chosen by the
query's model and by each round config's architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flwr.app import RecordDict

from federation.records import (
    RoundConfig,
    arrays_of,
    declaration_content,
    evaluate_reply,
    model_kind_of,
    query_model_of,
    round_config_of,
    train_reply,
)
from federation.settings import ModelKind
from federation.sites import SiteSpec, load_site_cases

if TYPE_CHECKING:
    from training.models import MultiTaskUNet

# torch, MONAI and nnU-Net are imported by the functions that use them: Flower starts one
# ClientApp process per message, and each pays only for its own model's imports.


def _nnunet(content: RecordDict) -> bool:
    return model_kind_of(round_config_of(content).architecture) is ModelKind.NNUNET


def declaration(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """The reply to the server's query: the site's name and tasks (nnU-Net: and its dataset)."""
    if query_model_of(content) is ModelKind.NNUNET:
        from federation.nnunet import site

        return site.declaration(spec)
    return declaration_content(spec.name, spec.tasks)


def fingerprint(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """nnU-Net: the site's fingerprint summary."""
    from federation.nnunet import site

    return site.fingerprint(spec, content)


def prepare(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """nnU-Net: preprocess for the shared plans and echo their SHA-256."""
    from federation.nnunet import site

    return site.prepare(spec, content)


def _model(content: RecordDict) -> tuple[MultiTaskUNet, RoundConfig]:
    from federation.local import set_arrays
    from training.models import ModelConfig, MultiTaskUNet

    config = round_config_of(content)
    model = MultiTaskUNet(ModelConfig.from_dict(config.architecture))
    set_arrays(model, arrays_of(content))
    return model, config


def train(spec: SiteSpec, content: RecordDict) -> RecordDict:
    """Train the site's heads on its cases; reply with arrays, metrics and the declaration."""
    if _nnunet(content):
        from federation.nnunet import site

        return site.train(spec, content)
    from federation.local import LocalTraining, get_arrays, train_heads

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
    if _nnunet(content):
        from federation.nnunet import site

        return site.evaluate(spec, content)
    from federation.local import evaluate_heads

    model, _ = _model(content)
    heads = [t for t in spec.tasks if t in model.heads]
    cases = load_site_cases(spec)
    scores = evaluate_heads(model, cases, heads)
    return evaluate_reply(spec.name, spec.tasks, scores, len(cases))


def site_spec(node_config: Mapping[str, object]) -> SiteSpec:
    """The site's declaration from its node config."""
    return SiteSpec.from_node_config(node_config)
