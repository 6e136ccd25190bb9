"""The dashboard in headless Chromium (Debian's, driven by Playwright): jobs, study view with the
SEG overlay drawn on the slice viewer (and gone when toggled off), measurements, models."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from service.api.main import create_app
from service.api.state import ServerState
from service.auth.tokens import Role, create_token
from service.config import Settings
from tests.requirements import missing
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.web.support import (
    DataDir,
    finish_job,
    install_suv_threshold_model,
    pet_stow_body,
)

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
#: A pixel is overlay-coloured when its channels differ this much (the image is grey).
COLOUR_SPREAD = 60


def _require_browser() -> None:
    absent = []
    if not CHROMIUM.exists():
        absent.append(f"{CHROMIUM} (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        absent.append("the playwright Python package")
    if absent:
        message = "dashboard browser test needs " + " and ".join(absent)
        missing(message)


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


def _coloured(png: bytes) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(np.count_nonzero(pixels.max(axis=2) - pixels.min(axis=2) > COLOUR_SPREAD))


def test_dashboard_draws_the_overlay(server: Server, data_dir: DataDir, tmp_path: Path) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    settings = server.state.settings
    install_suv_threshold_model(settings, tmp_path)
    with server.state.factory() as session, session.begin():
        sender, _ = create_token(session, "pacs", Role.SENDER)
        reader, _ = create_token(session, "planner", Role.READER)
    body, content_type, study = pet_stow_body(data_dir)
    stored = httpx.post(
        f"{server.url}/dicomweb/studies",
        content=body,
        headers={"Content-Type": content_type, "Authorization": f"Bearer {sender}"},
        timeout=60,
    )
    assert stored.status_code == 200
    job_id = finish_job(server.state, settings, study)
    shots = tmp_path / "shots"
    shots.mkdir()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            # The page works under its Content-Security-Policy: nothing is blocked.
            blocked: list[str] = []
            page.on(
                "console", lambda m: "Content Security Policy" in m.text and blocked.append(m.text)
            )
            loaded = page.goto(f"{server.url}/dashboard/")
            assert (
                loaded is not None
                and "script-src 'self'" in loaded.headers["content-security-policy"]
            )
            page.fill("#token-input", reader)
            page.click("#token-form button[type=submit]")
            row = page.locator(f"tr.job[data-job-id='{job_id}']")
            row.wait_for()
            assert "succeeded" in row.inner_text()
            page.screenshot(path=str(shots / "jobs.png"))

            row.click()
            canvas = page.locator("#viewer-canvas[data-overlay='on']")
            canvas.wait_for()
            page.locator("#measurements-table tbody tr").first.wait_for()
            assert "lesion" in page.locator("#measurements-table").inner_text()
            kinds = page.locator(".result-link").evaluate_all("els => els.map(e => e.dataset.kind)")
            assert {"seg", "rtstruct", "sr", "measurements"} <= set(kinds)
            page.screenshot(path=str(shots / "study.png"))
            with_overlay = canvas.screenshot(path=str(shots / "overlay-on.png"))

            page.uncheck("#overlay-toggle")
            page.locator("#viewer-canvas[data-overlay='off']").wait_for()
            without_overlay = page.locator("#viewer-canvas").screenshot(
                path=str(shots / "overlay-off.png")
            )

            page.click("#nav-models")
            page.locator("#models-table tbody tr").first.wait_for()
            models = page.locator("#models-table").inner_text()
            assert "threshold-test" in models and "0.0.1" in models and "2026-11-22" in models
        finally:
            browser.close()

    assert not blocked, blocked
    assert _coloured(with_overlay) > 50, "the SEG overlay should colour the lesion"
    assert _coloured(without_overlay) == 0, "no colour without the overlay"
    keep = os.environ.get("FEDSEG_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, Path(keep), dirs_exist_ok=True)
