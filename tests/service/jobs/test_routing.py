"""Routing rules choose the models a job runs: matching, priority, and the real runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.db.models import RoutingRule
from service.errors import FedsegError
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from service.jobs.routing import SeriesInfo, models_for, routed_models, rule_source, series_of
from service.jobs.runner import segment_runner
from tests.service.inference.conftest import pointwise_model, threshold_manifest
from tests.service.jobs.support import sqlite_db, write_ct_study


def _rule(rule_id: int, models: list[str], priority: int = 100, **criteria: str) -> RoutingRule:
    return RoutingRule(id=rule_id, priority=priority, models=models, **criteria)


CHEST_CT = SeriesInfo("1.2", modality="CT", body_part="CHEST", description="Thorax 1.0 B31f")


def test_first_matching_rule_by_priority_wins() -> None:
    rules = [
        _rule(1, ["any"], priority=200),
        _rule(2, ["chest"], priority=10, modality="ct", body_part="chest"),
        _rule(3, ["pet"], priority=5, modality="PT"),
    ]
    assert models_for(rules, CHEST_CT) == ["chest"]
    assert models_for(rules, SeriesInfo("1.3", modality="PT")) == ["pet"]
    assert models_for(rules, SeriesInfo("1.4", modality="MR")) == ["any"]
    assert models_for(rules[1:], SeriesInfo("1.4", modality="MR")) == []


def test_description_is_a_case_insensitive_search() -> None:
    rules = [_rule(1, ["thin"], series_description=r"\b1\.0\b"), _rule(2, ["other"], priority=300)]
    assert models_for(rules, CHEST_CT) == ["thin"]
    thick = SeriesInfo("1.5", modality="CT", description="Thorax 5.0 B31F")
    assert models_for(rules, thick) == ["other"]
    assert models_for([_rule(1, ["x"], series_description="thorax")], CHEST_CT) == ["x"]


def test_routed_models_are_the_union_over_series_in_order() -> None:
    rules = [_rule(1, ["pet", "shared"], modality="PT"), _rule(2, ["ct", "shared"], modality="CT")]
    series = [SeriesInfo("1", modality="PT"), SeriesInfo("2", modality="CT")]
    assert routed_models(rules, series) == ("pet", "shared", "ct")
    assert routed_models(rules, [SeriesInfo("3", modality="MR")]) == ()


def test_series_of_reads_each_series_once(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "a", seed="a") + write_ct_study(tmp_path / "b", seed="b")
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    found = series_of([*files, tmp_path / "junk.dcm"])
    assert len(found) == 2
    assert {s.modality for s in found} == {"CT"}
    assert {s.description for s in found} == {"phantom CT"}


def test_rule_source_reads_the_current_rules(tmp_path: Path) -> None:
    engine, factory = sqlite_db(tmp_path)
    load = rule_source(factory)
    assert list(load()) == []
    with factory() as session, session.begin():
        session.add(RoutingRule(priority=1, modality="CT", models=["ct-model"]))
    (rule,) = load()
    assert models_for([rule], CHEST_CT) == ["ct-model"]
    engine.dispose()


def _install(settings: Settings, folder: Path, name: str) -> None:
    manifest = threshold_manifest(
        name=name,
        modality="CT",
        normalisation={"kind": "ct-window", "low": 0.0, "high": 200.0},
        spacing=(1.5, 1.5, 3.0),
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(folder / name, model, manifest)
    ModelStore(roots=(settings.model_store,)).install(bundle.path)


@pytest.fixture
def two_models(tmp_path: Path) -> Settings:
    settings = Settings(
        state_dir=tmp_path / "state",
        model_store=tmp_path / "models",
        shipped_models=tmp_path / "shipped",
    )
    _install(settings, tmp_path / "bundles", "model-a")
    _install(settings, tmp_path / "bundles", "model-b")
    return settings


def _models_run(out_dir: Path) -> list[str]:
    summary = json.loads((out_dir / "summary.json").read_text())
    return sorted(s["model"] for s in summary["series"])


def test_runner_runs_the_routed_models(two_models: Settings, tmp_path: Path) -> None:
    inputs = write_ct_study(tmp_path / "ct", slices=6)
    routed = segment_runner(two_models, rules=lambda: [_rule(1, ["model-b"], modality="CT")])
    routed(inputs, tmp_path / "routed", lambda stage, fraction: None)
    assert _models_run(tmp_path / "routed") == ["model-b"]

    # No rule matches (MR only): the default is every installed model per task, the newest.
    unmatched = segment_runner(two_models, rules=lambda: [_rule(1, ["model-a"], modality="MR")])
    unmatched(inputs, tmp_path / "default", lambda stage, fraction: None)
    assert len(_models_run(tmp_path / "default")) == 1

    missing = segment_runner(two_models, rules=lambda: [_rule(1, ["not-installed"])])
    with pytest.raises(FedsegError, match="not-installed"):
        missing(inputs, tmp_path / "missing", lambda stage, fraction: None)


def test_a_rule_naming_a_folder_outside_the_store_is_refused(
    two_models: Settings, tmp_path: Path
) -> None:
    # An admin's rule must not make the server load any folder it can read as a bundle.
    inputs = write_ct_study(tmp_path / "ct", slices=6)
    outside = str(tmp_path / "bundles" / "model-a")  # a valid bundle, but not installed
    run = segment_runner(two_models, rules=lambda: [_rule(1, [outside])])
    with pytest.raises(FedsegError, match="outside the model stores"):
        run(inputs, tmp_path / "out", lambda stage, fraction: None)
    assert not (tmp_path / "out" / "summary.json").exists()
