"""Server checkpoints and the model registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from federation.checkpoint import CheckpointStore, RunState, model_hash
from federation.errors import FederationError
from federation.registry import ModelRegistry, RegistryEntry, task_metrics


def _state(server_round: int, value: float) -> RunState:
    arrays = {"encoder.w": np.full((2, 3), value, np.float32), "heads.liver.n": np.array(3)}
    return RunState(arrays, {"heads": {"liver": 2}}, {"a": ["liver"]}, server_round)


def test_resume_reads_the_newest_complete_round(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.latest() is None
    store.save(_state(1, 1.0))
    store.save(_state(2, 2.0))
    # An interrupted write leaves only a partial file, which resume ignores.
    (tmp_path / "round-0003.part.npz").write_bytes(b"partial")
    latest = store.latest()
    assert latest is not None and latest.last_round == 2
    np.testing.assert_array_equal(latest.arrays["encoder.w"], np.full((2, 3), 2.0, np.float32))
    assert latest.arrays["heads.liver.n"].dtype == np.array(3).dtype
    assert list(latest.arrays) == ["encoder.w", "heads.liver.n"]
    assert latest.sites == {"a": ["liver"]} and store.rounds() == [1, 2]


def test_damaged_checkpoint_is_reported(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_state(1, 1.0))
    (tmp_path / "round-0001.npz").write_bytes(b"not numpy")
    with pytest.raises(FederationError, match="damaged"):
        store.latest()


def test_model_hash_depends_on_values_and_names() -> None:
    a = _state(1, 1.0).arrays
    assert model_hash(a) == model_hash(dict(reversed(list(a.items()))))
    assert model_hash(a) != model_hash(_state(1, 1.5).arrays)
    assert model_hash(a) != model_hash(
        {"encoder.v": a["encoder.w"], "heads.liver.n": a["heads.liver.n"]}
    )


def test_registry_keeps_one_entry_per_round(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    site_metrics = {
        "a": {"dice/liver": 0.8, "n/liver": 3.0},
        "b": {"dice/liver": 0.6, "n/liver": 1.0, "dice/spleen": 0.5, "n/spleen": 2.0},
    }
    assert task_metrics(site_metrics) == pytest.approx({"liver": 0.75, "spleen": 0.5})
    for digest in ("x", "y"):
        registry.register(
            RegistryEntry("r0001-" + digest, 1, digest, ["a", "b"], site_metrics, {"liver": 0.75})
        )
    registry.register(RegistryEntry("r0002-z", 2, "z", ["a"], {}, {}))
    entries = registry.entries()
    assert [(e.server_round, e.model_hash) for e in entries] == [(1, "y"), (2, "z")]
