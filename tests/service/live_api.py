"""A fedseg app served by uvicorn on a free loopback port, in a thread of the test process.

Imported as ``from tests.service.live_api import live_api``. For tests that need a real HTTP
peer (clients, deliveries, forged headers) without starting ``fedseg serve`` as a process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from service.api.main import create_app
from service.api.state import ServerState
from service.auth.tokens import Role, create_token
from service.config import Settings
from service.server import Background


@dataclass(frozen=True)
class LiveApi:
    """The running app, its base URL and one token per role."""

    app: FastAPI
    url: str
    tokens: dict[Role, str]

    @property
    def state(self) -> ServerState:
        """The app's server state."""
        state: ServerState = self.app.state.server
        return state

    def headers(self, role: Role) -> dict[str, str]:
        """An Authorization header for ``role``."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_api(settings: Settings, background: tuple[Background, ...] = ()) -> Iterator[LiveApi]:
    """Serve ``create_app(settings, background)`` until the block ends."""
    app = create_app(settings, background)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True, name="live-api")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"the test API on port {port} did not start")
            time.sleep(0.05)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        state: ServerState = app.state.server
        tokens = {}
        with state.factory() as session, session.begin():
            for role in Role:
                tokens[role], _ = create_token(session, f"live-{role.value}", role)
        yield LiveApi(app, url, tokens)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
