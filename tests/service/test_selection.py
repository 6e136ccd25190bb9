"""The one series-selection step: routing rules, manifest series rules (one meaning), the
intended-use checks from header and image, and the real runner and CLI using it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings, get_settings
from service.db.models import RoutingRule
from service.dicom.volume import discover, load_volume
from service.errors import FedsegError
from service.inference.bundle import save_bundle
from service.inference.manifest import SeriesRule
from service.inference.store import ModelStore
from service.jobs.routing import rule_source
from service.jobs.runner import segment_runner
from service.qc.body import analyse_body
from service.segment import SegmentOptions, segment_study
from service.selection import SeriesAttributes as SeriesInfo
from service.selection import confirm, models_for, routed_models, select_series
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


def test_body_part_is_one_regex_for_routing_and_manifests() -> None:
    # A plain value keeps its old exact meaning (whole value, any case) ...
    rules = [_rule(1, ["chest"], body_part="CHEST")]
    assert models_for(rules, SeriesInfo("1", body_part="chest")) == ["chest"]
    assert models_for(rules, SeriesInfo("1", body_part="CHESTABDOMEN")) == []
    # ... and a regular expression means the same in a routing rule and in a manifest.
    rules = [_rule(1, ["trunk"], body_part="CHEST|ABDOMEN")]
    assert models_for(rules, SeriesInfo("1", body_part="Abdomen")) == ["trunk"]
    rule = SeriesRule(modality="CT", body_part="CHEST|ABDOMEN")
    assert rule.matches("CT", "", "abdomen") and not rule.matches("CT", "", "PELVIS")
    with pytest.raises(ValueError, match="regular expression"):
        SeriesRule(modality="CT", body_part="(")


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


def _limited_bundle(folder: Path, **intended: object) -> Path:
    """A CT threshold model whose intended use is narrowed by ``intended``."""
    block = {
        "modality": "CT",
        "body_regions": ["thorax", "abdomen"],
        "training_data": {"kind": "synthetic", "cases": 1, "sources": ["a test"]},
        **intended,
    }
    manifest = threshold_manifest(
        name="limited",
        modality="CT",
        normalisation={"kind": "ct-window", "low": 0.0, "high": 200.0},
        spacing=(1.5, 1.5, 3.0),
        intended_use=block,
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    return save_bundle(folder, model, manifest).path


def test_series_outside_the_intended_use_is_skipped_with_reasons_unless_forced(
    tmp_path: Path,
) -> None:
    inputs = write_ct_study(tmp_path / "ct", slices=6)  # 3 mm slices
    bundle = _limited_bundle(tmp_path / "b", slice_thickness_mm={"min": 0.5, "max": 2.0})
    settings = Settings(model_store=tmp_path / "m", shipped_models=tmp_path / "s")
    options = SegmentOptions(models=(str(bundle),))
    result = segment_study(inputs, tmp_path / "out", options, settings)
    (series,) = result.series
    assert series.skipped and not series.error and not series.outputs
    reason = "slice thickness 3 mm is outside the model's 0.5 to 2 mm"
    assert any(reason in warning for warning in series.warnings)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["series"][0]["applicability"]["inside_intended_use"] is False
    assert not (tmp_path / "out" / "seg.dcm").exists()

    forced = segment_study(inputs, tmp_path / "forced", replace(options, force=True), settings)
    (series,) = forced.series
    assert not series.skipped and series.applicability["forced"] is True
    assert (tmp_path / "forced" / "seg.dcm").is_file()


def test_the_thigh_ct_is_outside_ct_organs_by_header_and_image(
    data_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    thigh = data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image")
    options = SegmentOptions(models=("ct-organs",))
    result = segment_study([thigh], tmp_path / "out", options, get_settings())
    (series,) = result.series
    assert series.skipped and series.model == "fedseg-ct-organs"
    reasons = " ".join(series.applicability["reasons"])  # type: ignore[arg-type]
    assert "BodyPartExamined EXTREMITY is none of the model's abdomen, thorax" in reasons
    assert "the image shows neither thorax nor abdomen" in reasons
    assert not (tmp_path / "out" / "seg.dcm").exists()


def test_an_abdominal_ct_with_an_unknown_body_part_is_inside(
    data_dir: Callable[[str], Path],
) -> None:
    # BodyPartExamined PARTIALBODY is no defined term: the image decides (abdomen seen).
    folder = data_dir("ct-totalseg-example/tests/reference_files/example_ct_dicom")
    found = discover([folder], get_settings())
    bundle = ModelStore(roots=(get_settings().shipped_models,)).resolve("ct-organs")
    (candidate,) = select_series(found.plans, [bundle]).candidates
    volume = load_volume(candidate.plan)
    verdict = confirm(candidate, volume, analyse_body(volume.array, volume.affine, "CT"))
    assert verdict.inside, verdict.reasons
    checks = {f.check.value: f.status.value for f in verdict.findings}
    assert checks["body_regions_image"] == "pass" and "body_part_header" not in checks


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
