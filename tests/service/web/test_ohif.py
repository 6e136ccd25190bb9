"""OHIF at /viewer on fedseg's own DICOMweb, in Debian's Chromium (#19 item 1).

A PET study goes through a real job; OHIF then opens it with the reader token the dashboard
keeps, loads the SEG (the segmentation panel lists its segment label, the overlay colours the
lesion) and the RTSTRUCT (its ROI name), and every DICOMweb call it makes succeeds.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from PIL import Image

from service.auth.tokens import Role, create_token
from tests.requirements import missing
from tests.service.web.browser import CHROMIUM, CHROMIUM_ARGS, Server, require_browser
from tests.service.web.support import (
    DataDir,
    finish_job,
    install_suv_threshold_model,
    pet_stow_body,
)


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _red(png: bytes) -> np.ndarray:
    """Where the viewport is clearly red (the lesion's colour; the PET is grey)."""
    rgb = _rgb(png)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (red - green > 80) & (red - blue > 80)


def _load(page: Any, modality: str, title: str) -> None:
    """Open a result series from the study browser, accept OHIF's prompt, see it in the panel."""
    page.locator("[data-cy=studyBrowser-panel]").get_by_text(modality, exact=True).dblclick()
    page.get_by_role("button", name="Yes").click()
    if not page.locator("[data-cy=segmentation-select-value]").is_visible():
        page.locator("[data-cy=panelSegmentation-btn]").click()
    page.locator("[data-cy=segmentation-select-value]", has_text=title).wait_for()


def test_ohif_opens_the_seg_and_rtstruct(server: Server, data_dir: DataDir, tmp_path: Path) -> None:
    require_browser()
    settings = server.state.settings
    if not (settings.ohif_dir / "index.html").is_file():
        missing(f"OHIF is not installed in {settings.ohif_dir}: run `make ohif`")
    from playwright.sync_api import sync_playwright

    install_suv_threshold_model(settings, tmp_path)
    with server.state.factory() as session, session.begin():
        sender, _ = create_token(session, "pacs", Role.SENDER)
        reader, _ = create_token(session, "planner", Role.READER)
    body, content_type, study = pet_stow_body(data_dir)
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {sender}"}
    assert httpx.post(f"{server.url}/dicomweb/studies", content=body, headers=headers,
                      timeout=60).status_code == 200  # fmt: skip
    job_id = finish_job(server.state, settings, study)
    # What OHIF must list: the SEG's segment labels and the RTSTRUCT's ROI names.
    read = {"Authorization": f"Bearer {reader}"}
    results = f"{server.url}/v1/jobs/{job_id}/results"
    seg = pydicom.dcmread(io.BytesIO(httpx.get(f"{results}/seg", headers=read).content))
    rtstruct = pydicom.dcmread(io.BytesIO(httpx.get(f"{results}/rtstruct", headers=read).content))
    (segment,) = [str(s.SegmentLabel) for s in seg.SegmentSequence]
    (roi,) = [str(r.ROIName) for r in rtstruct.StructureSetROISequence]
    # OHIF names a loaded segmentation by its series description (shortened on screen).
    seg_title, rt_title = (str(ds.SeriesDescription)[:20] for ds in (seg, rtstruct))
    shots = tmp_path / "shots"
    shots.mkdir()
    failures: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.on("response", lambda r: failures.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)  # fmt: skip
            # OHIF works under the /viewer Content-Security-Policy: nothing is blocked.
            page.on("console", lambda m: "Content Security Policy" in m.text
                    and failures.append(m.text))  # fmt: skip
            # The reader signs in on the dashboard; the viewer reuses its session token.
            page.goto(f"{server.url}/dashboard/")
            page.fill("#token-input", reader)
            page.click("#token-form button[type=submit]")
            viewer = f"{server.url}/viewer/viewer?StudyInstanceUIDs={study}"
            page.goto(viewer)
            skip = page.get_by_text("Skip all")  # OHIF's first-visit tour
            skip.wait_for()
            skip.click()
            browser_panel = page.locator("[data-cy=studyBrowser-panel]")
            for modality in ("PT", "SEG", "RTSTRUCT", "SR"):
                browser_panel.get_by_text(modality, exact=True).first.wait_for()
            viewport = page.locator("[data-cy=viewport-pane]").first
            page.wait_for_timeout(2000)  # let the first slice render
            before = viewport.screenshot()

            _load(page, "SEG", seg_title)
            row = page.locator("[data-cy=data-row-title]", has_text=segment)
            row.wait_for()
            row.click()  # jumps to the segment's centre
            page.wait_for_timeout(2000)
            with_seg = viewport.screenshot(path=str(shots / "ohif-seg-viewport.png"))
            page.screenshot(path=str(shots / "ohif-seg.png"))
            page.locator("[data-cy=all-segments-visibility-toggle]").click()
            page.wait_for_timeout(1000)
            hidden = viewport.screenshot()

            page.goto(viewer)  # the structure set on its own, in a fresh viewer
            _load(page, "RTSTRUCT", rt_title)
            page.locator("[data-cy=data-row-title]", has_text=roi).wait_for()
            page.wait_for_timeout(2000)
            page.screenshot(path=str(shots / "ohif-rtstruct.png"))
        finally:
            browser.close()

    assert not [f for f in failures if "/dicomweb/" in f or "Policy" in f], failures
    assert not _red(before).any(), "the PET alone is grey"
    overlay = _red(with_seg)
    assert overlay.sum() > 200, "the SEG overlay should colour the lesion inside the image"
    # The overlay lies on the lesion: the segment is SUV > 4.5, bright at OHIF's PET window.
    grey = _rgb(hidden).mean(axis=2)
    assert not _red(hidden).any()
    assert np.median(grey[overlay]) > 150 > np.median(grey[~overlay])
    keep = os.environ.get("FEDSEG_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, Path(keep), dirs_exist_ok=True)
