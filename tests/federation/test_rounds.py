"""The ServerApp's round loop on a fake Flower Grid whose sites answer with plain arrays.

Flower's own Message and record classes travel; only the network is replaced by sites that
reply in-process (or not at all), so the loop's gate, checks, noise and checkpoints are
tested without a SuperLink.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from federation.checkpoint import CheckpointStore, RunState
from federation.records import (
    arrays_of,
    declaration_content,
    evaluate_reply,
    round_config_of,
    train_reply,
)
from federation.registry import ModelRegistry
from federation.round_step import round_step
from federation.rounds import query_sites, run_rounds, train_round
from federation.settings import RunSettings
from federation.updates import SiteUpdate

REFERENCE = {
    "encoder.w": np.zeros(4000, np.float32),
    "heads.liver.out.w": np.zeros(500, np.float32),
    "heads.spleen.out.w": np.full(500, 0.5, np.float32),
}

#: What a fake site does with a train message's arrays; None means it never answers.
Trainer = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray] | None]


def _shift(by: float) -> Trainer:
    return lambda arrays: {k: v + np.float32(by) for k, v in arrays.items()}


def _poisoned(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in arrays.items()}
    out["encoder.w"][0] = np.nan
    return out


class FakeGrid:
    """Nodes that answer query, train and evaluate messages in-process."""

    def __init__(self, sites: dict[str, Trainer]) -> None:
        self.sites = dict(enumerate(sites.items(), start=11))
        self.received: list[RecordDict] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.sites)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for message in messages:
            name, trainer = self.sites[message.metadata.dst_node_id]
            content = self._answer(message, name, trainer)
            if content is not None:
                replies.append(Message(content=content, reply_to=message))
        return replies

    def _answer(self, message: Message, name: str, trainer: Trainer) -> RecordDict | None:
        tasks = ("liver",) if name != "b" else ("spleen",)
        kind = message.metadata.message_type
        if kind == MessageType.QUERY:
            return declaration_content(name, tasks)
        self.received.append(message.content)
        round_config_of(message.content)  # every message carries a valid round config
        if kind == MessageType.EVALUATE:
            return evaluate_reply(name, tasks, {tasks[0]: [0.5]}, 1)
        trained = trainer(arrays_of(message.content))
        return None if trained is None else train_reply(name, tasks, trained, 2, 0.1)


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """The task identity Flower sets in a ServerApp process before messages are built."""
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def _state() -> RunState:
    return RunState({k: v.copy() for k, v in REFERENCE.items()}, {"heads": {}}, {})


def test_round_with_too_few_valid_replies_keeps_the_model(tmp_path: Path) -> None:
    # a trains, b sends NaN, c never answers: one valid update, two required.
    grid = FakeGrid({"a": _shift(0.1), "b": _poisoned, "c": lambda _: None})
    settings = RunSettings(state_dir=tmp_path, min_sites=2)
    state = _state()
    rejected = train_round(cast(Grid, grid), settings, state, 1, round_step)
    assert "NaN" in rejected["b"] and set(rejected) == {"b"}
    for name, array in REFERENCE.items():
        np.testing.assert_array_equal(state.arrays[name], array)


def test_deployed_round_is_the_round_step_with_the_run_settings(tmp_path: Path) -> None:
    grid = FakeGrid({"a": _shift(0.1), "b": _shift(0.3), "c": _shift(0.2)})
    settings = RunSettings.from_run_config(
        {"state-dir": str(tmp_path), "dp-noise": 0.8, "dp-clip": 0.5, "seed": 4}
    )
    state = _state()
    train_round(cast(Grid, grid), settings, state, 2, round_step)
    tasks = {"a": {"liver"}, "b": {"spleen"}, "c": {"liver"}}
    updates = [
        SiteUpdate(n, _shift(s)(dict(REFERENCE)), 2, frozenset(tasks[n]))  # type: ignore[arg-type]
        for n, s in (("a", 0.1), ("b", 0.3), ("c", 0.2))
    ]
    expected = round_step(REFERENCE, updates, settings.rules, 2)
    for name in REFERENCE:
        np.testing.assert_array_equal(state.arrays[name], expected.arrays[name])
    # The noise is there: the shared block is not the plain mean of the clipped updates.
    assert float(np.std(state.arrays["encoder.w"])) > 0.01


def test_rounds_checkpoint_and_register_each_round(tmp_path: Path) -> None:
    grid = FakeGrid({"a": _shift(0.1), "b": _shift(0.3)})
    settings = RunSettings(state_dir=tmp_path, num_rounds=2, local_steps=3)
    sites = query_sites(cast(Grid, grid), list(grid.sites), settings)
    assert sites == {"a": ["liver"], "b": ["spleen"]}
    state = run_rounds(cast(Grid, grid), settings, _state(), round_step)
    assert state.last_round == 2
    latest = CheckpointStore(tmp_path / "checkpoints").latest()
    assert latest is not None and latest.last_round == 2
    np.testing.assert_array_equal(latest.arrays["encoder.w"], state.arrays["encoder.w"])
    entries = ModelRegistry(tmp_path).entries()
    assert [e.server_round for e in entries] == [1, 2]
    assert entries[0].task_metrics == {"liver": 0.5, "spleen": 0.5}
    configs = [round_config_of(content) for content in grid.received]
    assert {c.local_steps for c in configs} == {3}
    assert [c.server_round for c in configs] == [1, 1, 1, 1, 2, 2, 2, 2]
