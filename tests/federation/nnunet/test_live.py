"""A live federated nnU-Net run: a real SuperLink (TLS, node auth, SQLite state) and two SuperNodes
on loopback, each holding a ``dataset build --format nnunet`` folder.

One run of two rounds (``model="nnunet"``, a tiny network):

- the ServerApp pools the sites' fingerprint summaries, plans with nnU-Net's planner and sends
  every site the same plans, whose SHA-256 each site echoes;
- the SuperLink (with its ServerApp) is killed with SIGKILL after round 1's checkpoint and
  started again; the re-submitted run resumes in nnU-Net mode from the checkpoint's plans;
- the promotion gate installs the best round's model, imported through nnU-Net's import path,
  and ``fedseg segment`` runs the installed bundle on a new phantom study.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from federation.checkpoint import CheckpointStore
from federation.records import nnunet_architecture_of
from service.cli.main import main
from service.inference.store import ModelStore
from tests.federation.deployment import Pilot, Process
from tests.federation.nnunet.sites import SCANNERS, export_case
from training.nnunet.federated_plans import plans_sha256

#: The sites' declared tasks must be their folders' labels (both contour liver and spleen).
SITES = {"site-a": ("liver,spleen", 0), "site-b": ("liver,spleen", 0)}
RUN = (
    'model="nnunet" num-rounds=2 min-sites=2 local-steps=4 learning-rate=0.01 '
    'nnunet-features="4,8,8,16" nnunet-patch="8,16,16" fingerprint-samples=40000 '
    "fingerprint-bin=0.25 round-timeout=120 connect-timeout=60 prepare-timeout=120"
)
pytestmark = pytest.mark.timeout(420)


def _logs(pilot: Pilot, run: Process) -> str:
    """The ServerApp's log and the end of each SuperNode's, for a failure message."""
    tails = [f"--- {name} ---\n{node.text[-4000:]}" for name, node in pilot.nodes.items()]
    return "\n".join([run.text, *tails])


def _receipt(text: str) -> tuple[str, str]:
    """The plans SHA-256 the ServerApp logged as received intact, and by which sites."""
    match = re.search(r"plans sha256 ([0-9a-f]{64}) received intact by (.*)", text)
    assert match, text
    return match.group(1), match.group(2).strip()


def test_live_nnunet_run_resumes_after_a_superlink_kill_and_its_promoted_bundle_segments(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    pilot = Pilot(tmp_path, SITES, database=tmp_path / "superlink.db")
    # Two SuperNodes and the ServerApp share two cores: one torch thread each.
    pilot.env["OMP_NUM_THREADS"] = "1"
    work = tmp_path / "work"
    state = tmp_path / "state"
    store = tmp_path / "store"
    config = f'{RUN} state-dir="{state}" promote-to="{store}"'
    checkpoints = CheckpointStore(state / "checkpoints")
    try:
        pilot.start_superlink()
        folders = {n: {"data": str(f), "work-dir": str(work / n)} for n, f in sites.items()}
        pilot.start_sites(folders)
        first = pilot.run(config)
        assert first.wait_for("round 1: training on 2 sites", 200), _logs(pilot, first)
        deadline = time.monotonic() + 120
        while not checkpoints.rounds() and time.monotonic() < deadline:
            time.sleep(0.2)
        # SIGKILL the SuperLink's process group: SuperLink, its SuperExec and the ServerApp.
        assert pilot.superlink is not None
        pilot.superlink.kill()
        first.kill()
        assert checkpoints.rounds() == [1], "the run was not mid-way at the kill"

        pilot.start_superlink()
        resumed = pilot.run(config)
        assert resumed.wait_for("promotion gate:", 200), _logs(pilot, resumed)
        resumed.kill()
    finally:
        pilot.close()

    # Every site received the same plans text, before round 1 and again on resume.
    text, _ = nnunet_architecture_of(checkpoints.load(1).model_config)
    digest = plans_sha256(text)
    assert _receipt(first.text) == (digest, "site-a, site-b")
    assert _receipt(resumed.text) == (digest, "site-a, site-b")
    for name in sites:
        cached = work / name / "nnunet" / f"{digest[:16]}-marginal"
        assert (cached / "plans.json").read_bytes() == text.encode("utf-8")
    assert "resuming after round 1" in resumed.text, resumed.text
    assert "round 1: training" not in resumed.text and "round 2: training" in resumed.text
    assert "promotion gate: promoted" in resumed.text, resumed.text

    entries = [json.loads(line) for line in (state / "registry.jsonl").read_text().splitlines()]
    assert [e["server_round"] for e in entries[:2]] == [1, 2]
    assert all(e["sites"] == ["site-a", "site-b"] for e in entries)
    assert all(set(e["task_metrics"]) == {"liver", "spleen"} for e in entries)
    assert entries[0]["model_hash"] != entries[1]["model_hash"]
    promotion = entries[-1]["promotion"]
    installed = ModelStore(roots=(store,)).for_task("fedseg-nnunet-ct-organs")
    assert installed is not None and installed.manifest.runtime == "nnunet-v2"
    provenance = installed.manifest.provenance
    assert provenance.validation_metrics == promotion["candidate"]
    assert provenance.training_sites == ["site-a", "site-b"]
    assert provenance.federated_rounds == entries[-1]["server_round"]

    _, spacing, shape, hu = SCANNERS["site-b"]
    export_case(tmp_path / "study", 9, spacing, shape, hu)
    out = tmp_path / "out"
    arguments = ["segment", str(tmp_path / "study" / "ct"), "--out", str(out)]
    arguments += ["--model", str(installed.path), "--device", "cpu", "--qc-policy", "flag"]
    assert main([*arguments, "--force"]) == 0
    (series,) = json.loads((out / "summary.json").read_text())["series"]
    assert series["error"] is None and series["model"] == "fedseg-nnunet-ct-organs"
    assert series["present"] and set(series["present"]) <= {"liver", "spleen"}, series
    assert (out / series["outputs"]["seg"]).is_file()
