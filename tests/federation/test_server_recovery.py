"""A live pilot (TLS, SuperNode auth, SQLite SuperLink state): promotion and server restart.

- At the end of a run the promotion gate exports the best round's model and installs it into
  the model store only when not worse; the decision is recorded in the registry.
- The SuperLink (with its SuperExec and the running ServerApp) is killed with SIGKILL mid-run and
  started again on the same database; re-submitting the run resumes after the newest checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.checkpoint import CheckpointStore
from federation.export import export_merged_bundle
from federation.local import model_config
from federation.sites import site_task
from service.inference.store import ModelStore
from tests.federation.deployment import Pilot
from training.export import ExportInfo
from training.models import build_model

SITES = {"a": ("liver", 1), "b": ("spleen", 2)}
RUN = 'min-sites=2 local-steps=1 filters="4,8" round-timeout=60 connect-timeout=60'
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pilot]:
    tmp = tmp_path_factory.mktemp("recovery")
    pilot = Pilot(tmp, SITES, database=tmp / "superlink.db")
    try:
        pilot.start_superlink()
        pilot.start_sites()
        yield pilot
    finally:
        pilot.close()


def _registry(state: Path) -> list[dict[str, object]]:
    lines = (state / "registry.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_run_end_promotes_only_a_model_that_is_not_worse(pilot: Pilot) -> None:
    store = pilot.tmp / "store"
    state = pilot.tmp / "promote"
    run = pilot.run(f'{RUN} state-dir="{state}" num-rounds=1 promote-to="{store}"')
    assert run.wait_for("promotion gate:", 150), run.text
    run.kill()
    assert "promotion gate: promoted" in run.text, run.text
    installed = ModelStore(roots=(store,)).for_task("ct-organs")
    assert installed is not None and installed.manifest.version == "1.0.0"
    entry = _registry(state)[-1]
    promotion = entry["promotion"]
    assert isinstance(promotion, dict) and promotion["promoted"] is True
    assert promotion["candidate"] == {
        f"dice/{task}": value
        for task, value in entry["task_metrics"].items()  # type: ignore[union-attr]
    }
    assert installed.manifest.provenance.validation_metrics == promotion["candidate"]

    # Submitted again with the same state-dir, the run trains no round and only repeats the
    # gate; against a store whose current model records a perfect Dice it keeps that model.
    perfect = pilot.tmp / "perfect-store"
    model = build_model(model_config(["liver", "spleen"], (4, 8)), 0)
    info = ExportInfo(version="3.0.0", validation_metrics={"dice/liver": 1.0, "dice/spleen": 1.0})
    ModelStore(roots=(perfect,)).install(
        export_merged_bundle(model, site_task(12.0), pilot.tmp / "perfect", info).path
    )
    again = pilot.run(f'{RUN} state-dir="{state}" num-rounds=1 promote-to="{perfect}"')
    assert again.wait_for("promotion gate:", 150), again.text
    again.kill()
    assert "resuming after round 1" in again.text and "round 1: training" not in again.text
    assert "promotion gate: kept" in again.text, again.text
    assert [b.manifest.version for b in ModelStore(roots=(perfect,)).bundles()] == ["3.0.0"]
    promotion = _registry(state)[-1]["promotion"]
    assert isinstance(promotion, dict)
    assert promotion["promoted"] is False and promotion["current_version"] == "3.0.0"
    assert "worse on" in str(promotion["reason"])
    decisions = (state / "promotions.jsonl").read_text().splitlines()
    assert [json.loads(line)["promote"] for line in decisions] == [True, False]


def test_superlink_killed_mid_run_resumes_from_the_checkpoint(pilot: Pilot) -> None:
    state = pilot.tmp / "restart"
    config = f'{RUN} state-dir="{state}" num-rounds=2'
    first = pilot.run(config)
    assert first.wait_for("round 1: training", 150), first.text
    checkpoints = CheckpointStore(state / "checkpoints")
    deadline = time.monotonic() + 120
    while not checkpoints.rounds() and time.monotonic() < deadline:
        time.sleep(0.2)
    # SIGKILL the SuperLink's process group: SuperLink, its SuperExec and the ServerApp.
    assert pilot.superlink is not None
    pilot.superlink.kill()
    first.kill()
    done = checkpoints.rounds()
    assert done == [1], f"checkpoints {done} at the kill; the run was not mid-way"

    pilot.start_superlink()
    resumed = pilot.run(config)
    assert resumed.wait_for("finished at round 2", 150), resumed.text
    resumed.kill()
    assert "resuming after round 1" in resumed.text, resumed.text
    assert "round 1: training" not in resumed.text and "round 2: training" in resumed.text
    entries = _registry(state)
    assert [e["server_round"] for e in entries] == [1, 2]
    assert checkpoints.rounds() == [1, 2]
    # The sites re-connected to the restarted SuperLink by themselves and trained round 2.
    assert entries[-1]["sites"] == ["a", "b"]
    assert entries[0]["model_hash"] != entries[1]["model_hash"]
