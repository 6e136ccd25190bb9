"""Debian's Chromium driven by Playwright, and the API served on a loopback port, for the
dashboard and OHIF tests. Imported as ``from tests.service.web.browser import ...``."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image

from service.api.main import create_app
from service.api.state import ServerState
from service.config import Settings
from tests.requirements import missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A pixel is overlay-coloured when its channels differ this much (the images are grey).
COLOUR_SPREAD = 60


def require_browser() -> None:
    """Skip (fail under CI) without Chromium or Playwright."""
    absent = []
    if not CHROMIUM.exists():
        absent.append(f"{CHROMIUM} (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        absent.append("the playwright Python package")
    if absent:
        missing("browser test needs " + " and ".join(absent))


def coloured(png: bytes) -> int:
    """How many pixels of a screenshot are clearly coloured (not grey)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(np.count_nonzero(pixels.max(axis=2) - pixels.min(axis=2) > COLOUR_SPREAD))


class Server:
    """The API served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.port = settings.api_port
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.server
        return state
