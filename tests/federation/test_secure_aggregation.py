"""Why fedseg has no SecAgg+ option: flwr's SecAgg+ needs the legacy compatibility layer.

A canary for ``docs/federation.md`` ("Secure aggregation (SecAgg+): not available"): if a flwr
upgrade brings SecAgg+ to the Message API, these facts change and the option can be added.
"""

from __future__ import annotations

import flwr.clientapp.mod
import pytest
from flwr.app import Context, RecordDict
from flwr.server.workflow import SecAggPlusWorkflow


def test_secaggplus_workflow_refuses_a_message_api_context() -> None:
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    workflow = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)
    with pytest.raises(TypeError, match="LegacyContext"):
        workflow(grid=None, context=context)  # type: ignore[arg-type]


def test_message_api_client_mods_have_no_secure_aggregation() -> None:
    assert not [name for name in flwr.clientapp.mod.__all__ if "secagg" in name.lower()]
