"""Promotion gate: a real exported bundle enters a temporary model store only when not worse."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from federation.errors import PromotionError
from federation.promotion import promote
from service.inference.store import ModelStore
from training.export import ExportInfo, export_bundle
from training.models import ModelConfig, build_model
from training.tasks import get_task


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    task = get_task("pet-lesion")
    model = build_model(ModelConfig(heads={"pet-lesion": 2}, filters=(4, 8)), seed=0)
    out = tmp_path_factory.mktemp("bundles")
    made = {}
    for version, metrics in (
        ("1.0.0", {"dice": 0.80}),
        ("1.1.0", {"dice": 0.75}),
        ("1.2.0", {"dice": 0.82}),
        ("1.3.0", {"dice": 0.80, "jaccard": 0.70}),
    ):
        info = ExportInfo(version=version, validation_metrics=metrics)
        made[version] = export_bundle(model, task, out / version, info, task.label_names).path
    return made


def test_install_only_when_not_worse(
    bundles: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    log = tmp_path / "promotion.jsonl"
    first = promote(bundles["1.0.0"], {"dice": 0.80}, store, log)
    assert first.promote and store.for_task("pet-lesion").manifest.version == "1.0.0"

    with caplog.at_level(logging.INFO):
        worse = promote(bundles["1.1.0"], {"dice": 0.75}, store, log)
    assert not worse.promote and "0.7500 < 0.8000" in worse.reason
    assert store.for_task("pet-lesion").manifest.version == "1.0.0"
    assert "kept current" in caplog.text

    better = promote(bundles["1.2.0"], {"dice": 0.82}, store, log)
    assert better.promote and better.current == {"dice": 0.80}
    assert store.for_task("pet-lesion").manifest.version == "1.2.0"

    decisions = [json.loads(line) for line in log.read_text().splitlines()]
    assert [d["promote"] for d in decisions] == [True, False, True]


def test_no_comparable_metric_is_not_promoted(bundles: dict[str, Path], tmp_path: Path) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    promote(bundles["1.0.0"], {"dice": 0.8}, store)
    decision = promote(bundles["1.2.0"], {"auc": 0.9}, store)
    assert not decision.promote and "none of the candidate's metrics" in decision.reason


def test_candidate_missing_a_recorded_metric_is_not_promoted(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    promote(bundles["1.3.0"], {"dice": 0.80, "jaccard": 0.70}, store)
    decision = promote(bundles["1.2.0"], {"dice": 0.82}, store)
    assert not decision.promote and "does not report ['jaccard']" in decision.reason
    assert store.for_task("pet-lesion").manifest.version == "1.3.0"  # type: ignore[union-attr]


def test_invalid_candidate_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PromotionError, match="not a valid bundle"):
        promote(tmp_path, {"dice": 1.0}, ModelStore(roots=(tmp_path / "store",)))
