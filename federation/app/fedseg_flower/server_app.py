"""ServerApp: start (or resume) the run's model, run the rounds, promote."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from federation.models import initial_state, model_for
from federation.publish import publish_run
from federation.rounds import run_rounds
from federation.settings import RunSettings

app = ServerApp()
logger = logging.getLogger("fedseg.federation")


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run (or resume) the federated rounds of this run."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("federation").setLevel(logging.INFO)
    logger.setLevel(logging.INFO)
    settings = RunSettings.from_run_config(context.run_config)
    model = model_for(settings)
    state = initial_state(grid, settings, model)
    state = run_rounds(grid, settings, state, model.aggregator(state))
    logger.info("finished at round %d", state.last_round)
    if settings.promote_to:
        decision = publish_run(settings, model)
        logger.info(
            "promotion gate: %s (%s)", "promoted" if decision.promote else "kept", decision.reason
        )
