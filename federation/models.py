"""What a federated run trains, behind the one interface the ServerApp drives.

The round loop (:mod:`federation.rounds`), the checkpoints, the registry and the promotion gate
are the same whatever the sites train. A :class:`FederatedModel` holds what differs:

- how a fresh run starts (:meth:`~FederatedModel.start`: the sites' declarations and the first
  global weights; for nnU-Net also the pooled fingerprint, the plans and their distribution),
  and what a resumed run redoes before its next round (:meth:`~FederatedModel.resume`);
- how a round's updates are aggregated (:meth:`~FederatedModel.aggregator`);
- how a checkpoint becomes a service bundle (:meth:`~FederatedModel.bundle_task`,
  :meth:`~FederatedModel.export`).

:class:`UnetModel` is fedseg's small multi-task U-Net; :class:`federation.nnunet.server.NnunetModel`
is nnU-Net. :func:`model_for` picks one from the run settings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from flwr.serverapp import Grid

from federation.checkpoint import CheckpointStore, RunState
from federation.errors import FederationError
from federation.records import model_kind_of
from federation.round_step import Aggregate, round_step
from federation.rounds import query_sites, wait_for_sites
from federation.settings import ModelKind, RunSettings
from training.export import ExportInfo

logger = logging.getLogger(__name__)


class FederatedModel(Protocol):
    """The model-specific steps of a federated run (see the module docstring)."""

    def start(self, grid: Grid, nodes: list[int]) -> RunState:
        """The state before round 1 of a fresh run."""
        ...

    def resume(self, grid: Grid, nodes: list[int], state: RunState) -> None:
        """What the sites need again before a resumed run's next round."""
        ...

    def aggregator(self, state: RunState) -> Aggregate:
        """The round step for this run's global weights."""
        ...

    def bundle_task(self, state: RunState) -> str:
        """The model-store task the exported bundle serves (the gate compares within it)."""
        ...

    def export(self, state: RunState, info: ExportInfo, out: Path) -> Path:
        """Write the checkpoint's model as a service bundle at ``out``; returns its folder."""
        ...


class UnetModel:
    """fedseg's multi-task U-Net: one binary head per organ any site declares."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings

    def start(self, grid: Grid, nodes: list[int]) -> RunState:
        """Query the sites and build the model with a head for each declared task."""
        from federation.local import get_arrays, model_config
        from training.models import build_model

        sites = query_sites(grid, nodes, self.settings)
        heads = sorted({t for tasks in sites.values() for t in tasks})
        model = build_model(model_config(heads, self.settings.filters), self.settings.seed)
        logger.info("model heads %s from sites %s", heads, sorted(sites))
        return RunState(get_arrays(model), model.config.as_dict(), sites)

    def resume(self, grid: Grid, nodes: list[int], state: RunState) -> None:
        """Nothing: every round message carries the architecture."""

    def aggregator(self, state: RunState) -> Aggregate:
        """The round step with the U-Net's parameter groups."""
        return round_step

    def bundle_task(self, state: RunState) -> str:
        """``ct-organs``."""
        from federation.sites import site_task

        return site_task(self.settings.spacing_mm).name.value

    def export(self, state: RunState, info: ExportInfo, out: Path) -> Path:
        """The organ heads merged into one ``ct-organs`` bundle."""
        import dataclasses

        from federation.export import export_merged_bundle
        from federation.local import set_arrays
        from federation.sites import site_task
        from training.models import ModelConfig, build_model

        model = build_model(ModelConfig.from_dict(state.model_config), self.settings.seed)
        set_arrays(model, state.arrays)
        notes = f"{info.notes}; organ heads {sorted(model.heads)}; other labels are never predicted"
        task = site_task(self.settings.spacing_mm)
        bundle = export_merged_bundle(model, task, out, dataclasses.replace(info, notes=notes))
        return bundle.path


def model_for(settings: RunSettings) -> FederatedModel:
    """The run's model (run config ``model``)."""
    if settings.model is ModelKind.NNUNET:
        from federation.nnunet.server import NnunetModel

        return NnunetModel(settings)
    return UnetModel(settings)


def initial_state(grid: Grid, settings: RunSettings, model: FederatedModel) -> RunState:
    """The newest checkpoint of the run's state-dir (resumed), or a fresh run's first state.

    Raises
    ------
    FederationError
        If the state-dir's checkpoints are of the other model, or too few sites connect.
    """
    latest = CheckpointStore(settings.state_dir / "checkpoints").latest()
    nodes = wait_for_sites(grid, settings)
    if latest is None:
        return model.start(grid, nodes)
    kind = model_kind_of(latest.model_config)
    if kind is not settings.model:
        raise FederationError(
            f"{settings.state_dir} holds a {kind} run's checkpoints and this run trains "
            f"{settings.model}; use a new state-dir"
        )
    logger.info("resuming after round %d", latest.last_round)
    model.resume(grid, nodes, latest)
    return latest
