"""ServerApp: build the model from the sites' declarations, run the rounds, promote."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.checkpoint import CheckpointStore, RunState
from federation.local import get_arrays, model_config
from federation.publish import publish_run
from federation.rounds import query_sites, run_rounds, wait_for_sites
from federation.settings import RunSettings
from training.models import build_model

app = ServerApp()
logger = logging.getLogger("fedseg.federation")


def _initial_state(grid: Grid, settings: RunSettings) -> RunState:
    latest = CheckpointStore(settings.state_dir / "checkpoints").latest()
    nodes = wait_for_sites(grid, settings)
    if latest is not None:
        logger.info("resuming after round %d", latest.last_round)
        return latest
    sites = query_sites(grid, nodes, settings)
    heads = sorted({t for tasks in sites.values() for t in tasks})
    model = build_model(model_config(heads, settings.filters), settings.seed)
    logger.info("model heads %s from sites %s", heads, sorted(sites))
    return RunState(get_arrays(model), model.config.as_dict(), sites)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) the federated rounds of this run."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("federation").setLevel(logging.INFO)
    logger.setLevel(logging.INFO)
    settings = RunSettings.from_run_config(context.run_config)
    state = run_rounds(grid, settings, _initial_state(grid, settings))
    logger.info("finished at round %d", state.last_round)
    if settings.promote_to:
        decision = publish_run(settings)
        logger.info(
            "promotion gate: %s (%s)", "promoted" if decision.promote else "kept", decision.reason
        )
