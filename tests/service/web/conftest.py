"""The ``server`` fixture: fedseg's API on a free loopback port, state under ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.web.browser import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = Settings(
        state_dir=tmp_path / "state",
        model_store=tmp_path / "models",
        shipped_models=tmp_path / "shipped",
        api_port=free_port(),
        quiet_period_s=3600,
        max_upload_bytes=50_000_000,
    )
    running = Server(settings)
    running.thread.start()
    try:
        wait_for_port(running.port)
        yield running
    finally:
        running.server.should_exit = True
        running.thread.join(timeout=30)
