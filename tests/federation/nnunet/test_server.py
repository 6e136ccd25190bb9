"""The ServerApp's nnU-Net mode on a fake Flower Grid whose sites run the ClientApp's nnU-Net code.

Flower's own Message and record classes travel; only the network is replaced: each node answers
in-process with :mod:`federation.nnunet.site`, on the ``dataset build --format nnunet`` folders
of the session's two sites. (The live test runs the same over a real SuperLink.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from federation.errors import FederationError
from federation.models import initial_state, model_for
from federation.nnunet import site
from federation.nnunet.server import NnunetModel
from federation.publish import publish_run
from federation.records import (
    FINGERPRINT_MESSAGE,
    PLANS_MESSAGE,
    nnunet_architecture_of,
    plans_content,
    plans_of,
)
from federation.rounds import run_rounds
from federation.settings import RunSettings
from federation.sites import SiteSpec
from service.inference.store import ModelStore
from training.export import ExportInfo
from training.nnunet.federated_plans import SharedPlans, plans_sha256

Handler = Callable[[SiteSpec, RecordDict], RecordDict]
HANDLERS: dict[str, Handler] = {
    MessageType.QUERY: lambda spec, _: site.declaration(spec),
    FINGERPRINT_MESSAGE: site.fingerprint,
    PLANS_MESSAGE: site.prepare,
    MessageType.TRAIN: site.train,
    MessageType.EVALUATE: site.evaluate,
}


class SiteGrid:
    """Nodes that answer with the ClientApp's nnU-Net functions; ``tamper`` sites get the plans
    text with one byte added (as a corrupting proxy would deliver it)."""

    def __init__(self, specs: dict[str, SiteSpec], tamper: frozenset[str] = frozenset()) -> None:
        self.nodes = dict(enumerate(specs.items(), start=21))
        self.tamper = tamper
        self.kinds: list[str] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            name, spec = self.nodes[message.metadata.dst_node_id]
            kind = message.metadata.message_type
            self.kinds.append(kind)
            content = message.content
            if kind == PLANS_MESSAGE and name in self.tamper:
                text, trainer = plans_of(content)
                content = plans_content(text + " ", trainer)
            replies.append(Message(content=HANDLERS[kind](spec, content), reply_to=message))
        return replies


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """The task identity Flower sets in a ServerApp process before messages are built."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def _specs(sites: dict[str, Path], work: Path) -> dict[str, SiteSpec]:
    return {
        name: SiteSpec(name=name, data=str(folder), work_dir=str(work / name))
        for name, folder in sites.items()
    }


def _settings(state: Path, **extra: object) -> RunSettings:
    config = {
        "state-dir": str(state),
        "model": "nnunet",
        "num-rounds": 1,
        "local-steps": 2,
        "learning-rate": 0.01,
        "nnunet-features": "4,8,8,16",
        "nnunet-patch": "8,16,16",
        "fingerprint-samples": 40_000,
        "fingerprint-bin": 0.25,
    }
    return RunSettings.from_run_config(config | extra)


def test_every_site_prepares_the_same_plans_and_a_tampered_copy_is_left_out(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    specs = _specs(sites, tmp_path / "work")
    grid = SiteGrid(specs, tamper=frozenset({"site-b"}))
    settings = _settings(tmp_path / "state", **{"min-sites": 1})
    state = initial_state(cast(Grid, grid), settings, model_for(settings))

    assert grid.kinds == [MessageType.QUERY] * 2 + [FINGERPRINT_MESSAGE] * 2 + [PLANS_MESSAGE] * 2
    assert state.sites == {"site-a": ["liver", "spleen"]}  # site-b echoed another SHA-256
    text, trainer = nnunet_architecture_of(state.model_config)
    shared = SharedPlans.from_json(text)
    assert trainer == "nnUNetTrainerMarginal" and shared.as_json() == text
    arch = shared.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"] == [4, 8, 8, 16]
    assert shared.dataset["numTraining"] == 5  # pooled: 2 + 3 cases
    cached = tmp_path / "work" / "site-a" / "nnunet" / f"{plans_sha256(text)[:16]}-marginal"
    assert (cached / "plans.json").read_bytes() == text.encode("utf-8")
    shapes = {k: v.shape for k, v in state.arrays.items()}
    assert shapes["decoder.seg_layers.2.weight"][0] == 3  # background, liver, spleen

    with pytest.raises(FederationError, match="only 1 sites received the plans intact"):
        NnunetModel(_settings(tmp_path / "other")).start(cast(Grid, grid), list(grid.nodes))


def test_a_resumed_run_sends_the_checkpoints_plans_and_sites_reuse_their_cases(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    specs = _specs(sites, tmp_path / "work")
    grid = SiteGrid(specs)
    settings = _settings(tmp_path / "state")
    model = model_for(settings)
    first = initial_state(cast(Grid, grid), settings, model)
    state = run_rounds(cast(Grid, grid), settings, first, model.aggregator(first))
    text, _ = nnunet_architecture_of(state.model_config)
    prepared_folder = f"{plans_sha256(text)[:16]}-marginal"
    marker = tmp_path / "work" / "site-b" / "nnunet" / prepared_folder / "prepared.json"
    prepared = json.loads(marker.read_text())
    assert len(prepared["training"]) == 2 and len(prepared["validation"]) == 1
    before = marker.stat().st_mtime_ns

    grid.kinds.clear()
    resumed = initial_state(cast(Grid, grid), settings, model)
    assert grid.kinds == [PLANS_MESSAGE] * 2  # no new query, fingerprint or plan
    assert resumed.last_round == 1 and resumed.model_config == state.model_config
    for name, array in state.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[name], array)
    assert marker.stat().st_mtime_ns == before  # the cases were not preprocessed again


def test_the_gate_installs_the_nnunet_bundle_only_when_not_worse(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    grid = SiteGrid(_specs(sites, tmp_path / "work"))
    store = tmp_path / "store"
    settings = _settings(tmp_path / "state", **{"promote-to": str(store)})
    model = model_for(settings)
    first = initial_state(cast(Grid, grid), settings, model)
    state = run_rounds(cast(Grid, grid), settings, first, model.aggregator(first))

    decision = publish_run(settings, model)
    installed = ModelStore(roots=(store,)).for_task("fedseg-nnunet-ct-organs")
    assert decision.promote and installed is not None
    assert installed.manifest.version == "1.0.0" and installed.manifest.runtime == "nnunet-v2"
    metrics = installed.manifest.provenance.validation_metrics
    assert set(metrics) == {"dice/liver", "dice/spleen"} and metrics == decision.candidate

    # Against a current model of the same task that records a perfect Dice, the gate keeps it.
    perfect_store = tmp_path / "perfect-store"
    perfect = {"dice/liver": 1.0, "dice/spleen": 1.0}
    bundle = model.export(
        state, ExportInfo(version="3.0.0", validation_metrics=perfect), tmp_path / "perfect"
    )
    ModelStore(roots=(perfect_store,)).install(bundle)
    kept = publish_run(settings.model_copy(update={"promote_to": str(perfect_store)}), model)
    assert not kept.promote and "worse on" in kept.reason and kept.current_version == "3.0.0"
    versions = [b.manifest.version for b in ModelStore(roots=(perfect_store,)).bundles()]
    assert versions == ["3.0.0"]
