from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.api.state import ServerState
from service.auth.tokens import Role, create_token
from service.config import Settings


class Api:
    """A running test app with one token per role."""

    def __init__(self, client: TestClient, tokens: dict[Role, str]) -> None:
        self.client = client
        self.tokens = tokens

    @property
    def state(self) -> ServerState:
        return self.client.app.state.server  # type: ignore[attr-defined,no-any-return]

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Server settings with all state under ``tmp_path`` and no automatic segmentation."""
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "model_store": tmp_path / "models",
        "shipped_models": tmp_path / "shipped",
        "max_upload_bytes": 5_000_000,
        "quiet_period_s": 3600,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings)) as client:
        state: ServerState = client.app.state.server  # type: ignore[attr-defined]
        tokens = {}
        with state.factory() as session, session.begin():
            for role in Role:
                tokens[role], _ = create_token(session, f"test-{role.value}", role)
        yield Api(client, tokens)
