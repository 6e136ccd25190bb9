"""End of a run: the chosen round's model is exported and gated into a model store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from pydicom.dataset import Dataset

from federation.checkpoint import CheckpointStore, RunState, model_hash
from federation.errors import PromotionError
from federation.export import ABSENT_LOGIT, MergedOrganHeads
from federation.local import get_arrays, model_config
from federation.publish import choose_entry, publish_run
from federation.registry import ModelRegistry, RegistryEntry
from federation.settings import PromoteChoice, RunSettings
from federation.sites import tiny_phantoms
from service.dicom.volume import Volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import Segmenter
from service.inference.session import Device, SessionOptions
from service.inference.store import ModelStore
from training.models import build_model
from training.phantoms import make_case

HEADS = ("liver", "spleen")


def _entry(server_round: int, metrics: dict[str, float], digest: str = "0" * 64) -> RegistryEntry:
    return RegistryEntry(
        version=f"r{server_round:04d}-{digest[:12]}",
        server_round=server_round,
        model_hash=digest,
        sites=["a", "b"],
        site_metrics={},
        task_metrics=metrics,
    )


def _finished_run(state_dir: Path, rounds: list[dict[str, float]], seed: int) -> RunSettings:
    """A state-dir as the round loop leaves it: one checkpoint and registry entry per round."""
    checkpoints = CheckpointStore(state_dir / "checkpoints")
    registry = ModelRegistry(state_dir)
    for number, metrics in enumerate(rounds, start=1):
        model = build_model(model_config(HEADS, (4, 8)), seed + number)
        arrays = get_arrays(model)
        checkpoints.save(
            RunState(arrays, model.config.as_dict(), {"a": ["liver"], "b": ["spleen"]}, number)
        )
        registry.register(_entry(number, metrics, model_hash(arrays)))
    return RunSettings(state_dir=state_dir, promote_to=str(state_dir.parent / "store"))


def test_choose_best_or_final_round() -> None:
    entries = [
        _entry(1, {"liver": 0.5, "spleen": 0.5}),
        _entry(2, {"liver": 0.9}),  # spleen not evaluated: not comparable
        _entry(3, {"liver": 0.6, "spleen": 0.6}),
        _entry(4, {"liver": 0.55, "spleen": 0.55}),
    ]
    assert choose_entry(entries, PromoteChoice.BEST).server_round == 3
    assert choose_entry(entries, PromoteChoice.FINAL).server_round == 4
    with pytest.raises(PromotionError, match="no model"):
        choose_entry([], PromoteChoice.BEST)


def test_merged_heads_match_each_binary_head() -> None:
    model = build_model(model_config(HEADS, (4, 8)), 3).eval()
    labels = ["liver", "spleen", "kidney_left"]
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        merged = MergedOrganHeads(model, labels)(x)
        liver = model(x, "liver")
    assert merged.shape == (1, 4, 16, 16, 16)
    assert torch.all(merged[:, 0] == 0) and torch.all(merged[:, 3] == ABSENT_LOGIT)
    # Background vs liver alone gives exactly the binary head's probabilities.
    pair = torch.softmax(merged[:, [0, 1]], dim=1)
    torch.testing.assert_close(pair, torch.softmax(liver, dim=1), rtol=1e-5, atol=1e-6)


def test_promoted_only_when_not_worse(tmp_path: Path) -> None:
    first = _finished_run(
        tmp_path / "run1", [{"liver": 0.4, "spleen": 0.3}, {"liver": 0.5, "spleen": 0.35}], 0
    )
    decision = publish_run(first)
    assert decision.promote and decision.current is None
    store = ModelStore(roots=(tmp_path / "store",))
    installed = store.for_task("ct-organs")
    assert installed is not None and installed.manifest.version == "1.0.0"
    provenance = installed.manifest.provenance
    assert provenance.validation_metrics == {"dice/liver": 0.5, "dice/spleen": 0.35}
    assert provenance.federated_rounds == 2

    # The installed network is the round-2 model's merged heads, run by onnxruntime.
    round2 = CheckpointStore(tmp_path / "run1" / "checkpoints").load(2)
    model = build_model(model_config(HEADS, (4, 8)), 0)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in round2.arrays.items()})
    x = np.random.default_rng(0).normal(size=(1, 1, 16, 16, 16)).astype(np.float32)
    session = onnxruntime.InferenceSession(
        str(installed.model_path), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": x})[0]
    assert got.shape == (1, 9, 16, 16, 16)
    with torch.no_grad():
        spleen = model(torch.from_numpy(x), "spleen").numpy()
    np.testing.assert_allclose(got[:, 2], spleen[:, 1] - spleen[:, 0], atol=1e-4)

    # A later run whose best round is worse on one organ is exported but not installed.
    worse = _finished_run(tmp_path / "run2", [{"liver": 0.7, "spleen": 0.3}], 10)
    refused = publish_run(worse)
    assert not refused.promote and "dice/spleen 0.3000 < 0.3500" in refused.reason
    assert store.for_task("ct-organs").manifest.version == "1.0.0"  # type: ignore[union-attr]
    entry = ModelRegistry(tmp_path / "run2").entries()[0]
    candidate = ModelBundle.load(tmp_path / "run2" / "bundles" / entry.version)
    assert candidate.manifest.version == "1.1.0"
    assert entry.promotion["promoted"] is False
    assert entry.promotion["current_version"] == "1.0.0"
    log = (tmp_path / "run2" / "promotions.jsonl").read_text().splitlines()
    logged = [json.loads(line) for line in log]
    assert [d["promote"] for d in logged] == [False]

    better = _finished_run(tmp_path / "run3", [{"liver": 0.6, "spleen": 0.4}], 20)
    assert publish_run(better).promote
    assert store.for_task("ct-organs").manifest.version == "1.1.0"  # type: ignore[union-attr]


def test_gate_compares_with_the_shipped_models_the_service_also_reads(tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    good = _finished_run(tmp_path / "old", [{"liver": 0.9, "spleen": 0.9}], 0)
    publish_run(good.model_copy(update={"promote_to": str(shipped)}))
    run = _finished_run(tmp_path / "run", [{"liver": 0.5, "spleen": 0.5}], 5)
    decision = publish_run(run.model_copy(update={"shipped_models": str(shipped)}))
    assert not decision.promote and decision.current_version == "1.0.0"
    assert ModelStore(roots=(tmp_path / "store",)).bundles() == []


def test_the_service_segments_with_a_promoted_bundle(tmp_path: Path) -> None:
    settings = _finished_run(tmp_path / "run", [{"liver": 0.5, "spleen": 0.5}], 0)
    assert publish_run(settings).promote
    bundle = ModelStore(roots=(tmp_path / "store",)).for_task("ct-organs")
    assert bundle is not None
    ct = make_case(tiny_phantoms(0, 1), 1, 1).ct
    assert ct is not None
    volume = Volume(
        array=ct.hu.astype(np.float32),
        affine=ct.grid.affine,
        modality="CT",
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="1.2.4",
        series_description="phantom",
        stack_label="",
        slices=(),
        headers=(Dataset(),),
    )
    result = Segmenter(bundle, SessionOptions(device=Device.CPU)).segment(volume)
    assert result.labels.shape == volume.shape
    # Only the organs the federation trained heads for can appear (liver 1, spleen 2).
    values = set(np.unique(result.labels).tolist())
    assert values <= {0, 1, 2} and values & {1, 2}
