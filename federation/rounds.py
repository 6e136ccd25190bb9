"""The server's round loop on a Flower Grid: query sites, train, check, aggregate, evaluate.

Every message carries the round timeout as its wait; replies that do not arrive in time, error
replies and rejected updates simply do not count, so a site that drops out mid-round cannot
stall the run. A round with fewer than ``min_sites`` accepted updates keeps the previous model.
The global model is checkpointed and registered after every round; a restarted run resumes
after the newest checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid

from federation.checkpoint import CheckpointStore, RunState, model_hash
from federation.errors import FederationError
from federation.privacy import epsilon
from federation.records import (
    RoundConfig,
    metrics_of,
    query_content,
    round_content,
    site_of,
    update_of,
)
from federation.registry import ModelRegistry, RegistryEntry, task_metrics
from federation.round_step import Aggregate
from federation.settings import RunSettings

logger = logging.getLogger(__name__)


def send(
    grid: Grid, nodes: Iterable[int], kind: str, record: RecordDict, timeout: float
) -> list[Message]:
    """Send ``record`` to every node; the replies that arrived in time without an error."""
    messages = [Message(content=record, dst_node_id=n, message_type=kind) for n in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    ok = [r for r in replies if not r.has_error()]
    for reply in replies:
        if reply.has_error():
            logger.warning(
                "node %d replied with an error: %s", reply.metadata.src_node_id, reply.error.reason
            )
    missing = len(messages) - len(replies)
    if missing:
        logger.warning(
            "%d of %d sites did not reply within %.0f s", missing, len(messages), timeout
        )
    return ok


def wait_for_sites(grid: Grid, settings: RunSettings) -> list[int]:
    """Node ids once ``min_sites`` are connected.

    Raises
    ------
    FederationError
        If too few sites connect within the connect timeout.
    """
    deadline = time.monotonic() + settings.connect_timeout_s
    while len(nodes := sorted(grid.get_node_ids())) < settings.min_sites:
        if time.monotonic() > deadline:
            raise FederationError(
                f"only {len(nodes)} of the required {settings.min_sites} sites connected within "
                f"{settings.connect_timeout_s:.0f} s; check the SuperNodes' logs"
            )
        time.sleep(1.0)
    return nodes


def query_replies(grid: Grid, nodes: list[int], settings: RunSettings) -> list[Message]:
    """Every site's reply to the query for its declaration (for the run's model).

    Raises
    ------
    FederationError
        If fewer than ``min_sites`` answer.
    """
    content = query_content(settings.model)
    replies = send(grid, nodes, MessageType.QUERY, content, settings.connect_timeout_s)
    answered = {site_of(r)[0] for r in replies}
    if len(answered) < settings.min_sites:
        raise FederationError(f"only {len(answered)} sites answered; {settings.min_sites} required")
    return replies


def query_sites(grid: Grid, nodes: list[int], settings: RunSettings) -> dict[str, list[str]]:
    """Each responding site's declared tasks, by site name."""
    return {
        name: sorted(tasks)
        for name, tasks in (site_of(r) for r in query_replies(grid, nodes, settings))
    }


def _content(settings: RunSettings, state: RunState, server_round: int) -> RecordDict:
    config = RoundConfig(
        server_round=server_round,
        num_rounds=settings.num_rounds,
        architecture=state.model_config,
        local_steps=settings.local_steps,
        learning_rate=settings.learning_rate,
        proximal_mu=settings.proximal_mu,
        seed=settings.seed + server_round,
    )
    return round_content(state.arrays, config)


def train_round(
    grid: Grid,
    settings: RunSettings,
    state: RunState,
    server_round: int,
    aggregate: Aggregate,
) -> dict[str, str]:
    """One training round; updates ``state.arrays`` in place. Returns rejected sites and why.

    The replies go through ``aggregate``: :func:`federation.round_step.round_step` (as in the
    simulation), or the round step on nnU-Net's per-label output split.
    """
    # After a SuperLink restart the SuperNodes reconnect one by one: start the round only once
    # min_sites are connected, or a round with one site is gated and the model silently kept.
    nodes = wait_for_sites(grid, settings)
    logger.info("round %d: training on %d sites", server_round, len(nodes))
    content = _content(settings, state, server_round)
    replies = send(grid, nodes, MessageType.TRAIN, content, settings.round_timeout_s)
    updates = []
    for reply in replies:
        try:
            updates.append(update_of(reply))
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning(
                "round %d: malformed reply from node %d: %s",
                server_round,
                reply.metadata.src_node_id,
                exc,
            )
    outcome = aggregate(state.arrays, updates, settings.rules, server_round)
    state.arrays = outcome.arrays
    return outcome.rejected


def evaluate_round(
    grid: Grid, settings: RunSettings, state: RunState, server_round: int
) -> dict[str, dict[str, float]]:
    """Federated evaluation of the global model: metrics by site name."""
    nodes = sorted(grid.get_node_ids())
    content = _content(settings, state, server_round)
    out: dict[str, dict[str, float]] = {}
    for reply in send(grid, nodes, MessageType.EVALUATE, content, settings.round_timeout_s):
        name, _ = site_of(reply)
        out[name] = metrics_of(reply)
    return out


def _budget(settings: RunSettings, server_round: int) -> dict[str, float]:
    privacy = settings.privacy
    if privacy is None:
        return {}
    spent = epsilon(server_round, privacy.noise_multiplier, privacy.delta)
    logger.info(
        "round %d: privacy budget epsilon %.3f at delta %g", server_round, spent, privacy.delta
    )
    return {
        "epsilon": spent,
        "delta": privacy.delta,
        "noise_multiplier": privacy.noise_multiplier,
        "clip": privacy.clip,
    }


def run_rounds(
    grid: Grid,
    settings: RunSettings,
    initial: RunState,
    aggregate: Aggregate,
) -> RunState:
    """Rounds ``initial.last_round + 1 .. num_rounds``, checkpointing and registering each.

    The loop is the same whatever the sites train; ``aggregate`` is the model's round step
    (:meth:`federation.models.FederatedModel.aggregator`).
    """
    checkpoints = CheckpointStore(settings.state_dir / "checkpoints")
    registry = ModelRegistry(settings.state_dir)
    state = initial
    for server_round in range(state.last_round + 1, settings.num_rounds + 1):
        started = time.monotonic()
        rejected = train_round(grid, settings, state, server_round, aggregate)
        site_metrics = evaluate_round(grid, settings, state, server_round)
        state.last_round = server_round
        digest = model_hash(state.arrays)
        registry.register(
            RegistryEntry(
                version=f"r{server_round:04d}-{digest[:12]}",
                server_round=server_round,
                model_hash=digest,
                sites=sorted(site_metrics),
                site_metrics=site_metrics,
                task_metrics=task_metrics(site_metrics),
                rejected=rejected,
                privacy=_budget(settings, server_round),
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
        )
        # Registered first: a checkpoint always has its registry entry. A crash in between
        # repeats the round on resume, and its new entry supersedes the earlier one.
        checkpoints.save(state)
        logger.info(
            "round %d done in %.1f s; sites %s",
            server_round,
            time.monotonic() - started,
            sorted(site_metrics),
        )
    return state
