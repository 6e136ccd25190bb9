"""The dashboard in headless Chromium (Debian's, driven by Playwright): jobs, study view with the
SEG overlay drawn on the slice viewer (and gone when toggled off), measurements, models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

from service.auth.tokens import Role, create_token
from tests.service.web.browser import CHROMIUM, CHROMIUM_ARGS, Server, coloured, require_browser
from tests.service.web.support import (
    DataDir,
    finish_job,
    install_suv_threshold_model,
    pet_stow_body,
)


def test_dashboard_draws_the_overlay(server: Server, data_dir: DataDir, tmp_path: Path) -> None:
    require_browser()
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
            # The study list names the patient, date, modalities and description (via QIDO).
            row.locator("td", has_text="2005-04-15").wait_for()
            cells = row.locator("td").all_inner_texts()
            assert cells[1:4] == ["STS_003", "STS_003", "2005-04-15"], cells
            assert cells[4] == "PT, RTSTRUCT, SEG, SR" and cells[5] == "IBSI_1_STS_003_PET", cells
            assert cells[6] == "succeeded", cells
            # The QC flag: every job row carries its structures' verdict.
            assert "QC" in row.locator("td.qc-pass, td.qc-warn, td.qc-fail").inner_text()
            page.screenshot(path=str(shots / "jobs.png"))
            # The token survives leaving the dashboard (here for the viewer) and coming back.
            page.goto(f"{server.url}/viewer/")
            page.goto(f"{server.url}/dashboard/")
            row.wait_for()

            row.click()
            canvas = page.locator("#viewer-canvas[data-overlay='on']")
            canvas.wait_for()
            page.locator("#measurements-table tbody tr").first.wait_for()
            measured = page.locator("#measurements-table tbody tr").first
            values = measured.locator("td").all_inner_texts()
            assert "lesion" in values[0] and values[1] == "PT", values
            assert values[4].endswith(" SUVbw") and values[3].endswith(" SUVbw"), values
            headers = page.locator("#measurements-table th").all_inner_texts()
            assert sum("max" in h.lower() for h in headers) == 1, headers
            assert values[-1].split()[0] in {"PASS", "WARN", "FAIL"}, values
            assert "TLG (g)" in headers and "Volume (mL)" in headers and "QC" in headers
            # The layer is named by its series, not a UID tail; OHIF is one click away.
            layer = page.locator("#layer-select option").first.inner_text()
            assert layer == "PT #4 IBSI_1_STS_003_PET_image", layer
            ohif = page.locator("#study-ohif").get_attribute("href")
            assert ohif is not None and ohif.endswith(f"StudyInstanceUIDs={study}")
            assert page.locator("#deliveries-none").is_visible()
            kinds = page.locator(".result-link").evaluate_all("els => els.map(e => e.dataset.kind)")
            assert {"seg", "rtstruct", "sr", "measurements"} <= set(kinds)
            page.screenshot(path=str(shots / "study.png"), full_page=True)
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
    assert coloured(with_overlay) > 50, "the SEG overlay should colour the lesion"
    assert coloured(without_overlay) == 0, "no colour without the overlay"
    keep = os.environ.get("FEDSEG_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, Path(keep), dirs_exist_ok=True)
