"""The promotion gate: a federated model replaces the service's model only when not worse.

The candidate's federated validation metrics are compared, key by key, with the
``validation_metrics`` recorded in the provenance of the current bundle of the same task. Every
shared metric must be at least the current value (minus ``tolerance``); higher is better for
every metric fedseg records (Dice, Jaccard, AUC). A candidate that does not report a metric the
current model records (an organ it would lose) is not promoted. The decision and its numbers
are logged, and only a promoted bundle is installed into the model store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from federation.errors import PromotionError
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.store import ModelStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate was promoted, against what, and why."""

    task: str
    promote: bool
    candidate: dict[str, float]
    current: dict[str, float] | None
    current_version: str | None
    reason: str


def decide(
    task: str,
    candidate: Mapping[str, float],
    current: ModelBundle | None,
    tolerance: float = 0.0,
) -> PromotionDecision:
    """Compare ``candidate`` metrics with the current bundle's recorded validation."""
    if tolerance < 0:
        raise PromotionError("the promotion tolerance cannot be negative")
    cand = {k: float(v) for k, v in candidate.items()}
    if current is None:
        return PromotionDecision(task, True, cand, None, None, "no model installed for the task")
    recorded = dict(current.manifest.provenance.validation_metrics)
    version = current.manifest.version
    shared = sorted(set(cand) & set(recorded))
    if not shared:
        return PromotionDecision(
            task,
            False,
            cand,
            recorded,
            version,
            f"the current model records none of the candidate's metrics {sorted(cand)}; "
            "promote manually after a side-by-side evaluation",
        )
    missing = sorted(set(recorded) - set(cand))
    if missing:
        return PromotionDecision(
            task,
            False,
            cand,
            recorded,
            version,
            f"the candidate does not report {missing}, which the current model records",
        )
    worse = [k for k in shared if cand[k] < recorded[k] - tolerance]
    if worse:
        detail = ", ".join(f"{k} {cand[k]:.4f} < {recorded[k]:.4f}" for k in worse)
        return PromotionDecision(task, False, cand, recorded, version, f"worse on {detail}")
    detail = ", ".join(f"{k} {cand[k]:.4f} >= {recorded[k]:.4f}" for k in shared)
    return PromotionDecision(task, True, cand, recorded, version, f"not worse: {detail}")


def promote(
    bundle_dir: Path,
    candidate: Mapping[str, float],
    store: ModelStore,
    log_path: Path | None = None,
    tolerance: float = 0.0,
) -> PromotionDecision:
    """Install the bundle in ``bundle_dir`` into ``store`` if the gate lets it through.

    Raises
    ------
    PromotionError
        If the candidate bundle does not verify or cannot be installed.
    """
    try:
        bundle = ModelBundle.load(bundle_dir)
    except ModelBundleError as exc:
        raise PromotionError(f"candidate {bundle_dir} is not a valid bundle: {exc}") from exc
    task = bundle.manifest.task
    decision = decide(task, candidate, store.for_task(task), tolerance)
    logger.info(
        "promotion of %s %s (%s): %s; candidate %s, current %s %s",
        bundle.manifest.name,
        bundle.manifest.version,
        task,
        "PROMOTED" if decision.promote else "kept current",
        decision.candidate,
        decision.current_version,
        decision.current,
    )
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps({"reason": decision.reason, **asdict(decision)}) + "\n")
    if decision.promote:
        try:
            store.install(bundle_dir)
        except ModelBundleError as exc:
            raise PromotionError(f"could not install {bundle_dir}: {exc}") from exc
    return decision
