"""End of a run: export the chosen global model and pass it through the promotion gate.

The ServerApp calls :func:`publish_run` after the last round when ``promote-to`` names a model
store. The model of the best (or final) registered round is loaded from its checkpoint and
exported by the run's model (:mod:`federation.models`): the U-Net as a ``ct-organs`` bundle,
nnU-Net through nnU-Net's import path as a ``runtime nnunet-v2`` bundle. Its provenance records
the federated Dice per label, and it is installed only if the gate finds it not worse than the
store's current model of the same task. The decision is logged, appended to
``state-dir/promotions.jsonl`` and recorded in the round's registry entry.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from federation.checkpoint import CheckpointStore
from federation.errors import PromotionError
from federation.message_keys import dice_key
from federation.models import FederatedModel, model_for
from federation.promotion import PromotionDecision, promote
from federation.registry import ModelRegistry, RegistryEntry
from federation.settings import PromoteChoice, RunSettings
from service.inference.bundle import ModelBundle
from service.inference.store import ModelStore
from training.export import ExportInfo

logger = logging.getLogger(__name__)

_SEMVER = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def choose_entry(entries: Sequence[RegistryEntry], choice: PromoteChoice) -> RegistryEntry:
    """The registered round the gate considers.

    ``BEST`` takes the highest mean task Dice among the rounds evaluated on every task of the
    final round (a round some site missed is not comparable); ties go to the later round.

    Raises
    ------
    PromotionError
        If nothing is registered or the final round has no federated evaluation.
    """
    if not entries:
        raise PromotionError("the run registered no model; nothing to promote")
    final = entries[-1]
    if not final.task_metrics:
        raise PromotionError(f"round {final.server_round} has no federated evaluation metrics")
    if choice is PromoteChoice.FINAL:
        return final
    tasks = set(final.task_metrics)
    comparable = [e for e in entries if set(e.task_metrics) >= tasks]

    def score(entry: RegistryEntry) -> tuple[float, int]:
        values = [entry.task_metrics[t] for t in tasks]
        return sum(values) / len(values), entry.server_round

    return max(comparable, key=score)


def next_version(current: ModelBundle | None) -> str:
    """A version that sorts above the store's current model (minor bump), or 1.0.0."""
    if current is None:
        return "1.0.0"
    match = _SEMVER.match(current.manifest.version)
    if match is None:
        raise PromotionError(
            f"cannot derive a newer version from {current.manifest.version!r}; "
            "promote manually with an explicit version"
        )
    return f"{int(match.group(1))}.{int(match.group(2)) + 1}.0"


def candidate_metrics(entry: RegistryEntry) -> dict[str, float]:
    """The round's federated validation as the bundle records it (``dice/<organ>``)."""
    return {dice_key(task): float(value) for task, value in sorted(entry.task_metrics.items())}


def publish_run(settings: RunSettings, model: FederatedModel | None = None) -> PromotionDecision:
    """Export the chosen round's model and promote it into ``settings.promote_to``.

    ``model`` defaults to the run settings' (:func:`federation.models.model_for`).

    Raises
    ------
    PromotionError
        If there is nothing to promote, or the export or installation fails.
    """
    model = model or model_for(settings)
    registry = ModelRegistry(settings.state_dir)
    entry = choose_entry(registry.entries(), settings.promote_model)
    state = CheckpointStore(settings.state_dir / "checkpoints").load(entry.server_round)
    roots = [Path(settings.promote_to)]
    if settings.shipped_models:
        roots.append(Path(settings.shipped_models))
    store = ModelStore(roots=tuple(roots))
    version = next_version(store.for_task(model.bundle_task(state)))
    metrics = candidate_metrics(entry)
    info = ExportInfo(
        version=version,
        training_sites=sorted(state.sites),
        federated_rounds=entry.server_round,
        validation_metrics=metrics,
        notes=f"federated global model {entry.version} (SHA-256 {entry.model_hash})",
    )
    logger.info("exporting round %d (%s) as version %s", entry.server_round, entry.version, version)
    bundle = model.export(state, info, settings.state_dir / "bundles" / entry.version)
    decision = promote(bundle, metrics, store, settings.state_dir / "promotions.jsonl")
    record = {
        "promoted": decision.promote,
        "bundle_version": version,
        "store": settings.promote_to,
        "candidate": decision.candidate,
        "current": decision.current,
        "current_version": decision.current_version,
        "reason": decision.reason,
    }
    registry.register(dataclasses.replace(entry, promotion=record))
    return decision
