"""The dashboard in headless Chromium (Debian's, driven by Playwright): jobs, study view with the
SEG overlay drawn on the slice viewer (and gone when toggled off), measurements, models; the
viewer's window presets and drag, edge letters, plane position and the value under the cursor,
and, on phantoms stored feet first and prone, the side a structure appears on."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from service.auth.tokens import Role, create_token
from service.dicom.volume import Volume, read_volume
from service.dicomweb.multipart import write_related
from service.masks.seg_reader import read_seg
from service.pet.suv import to_suv
from tests.service.web.browser import CHROMIUM, CHROMIUM_ARGS, Server, coloured, require_browser
from tests.service.web.support import (
    PET_STUDY,
    DataDir,
    finish_job,
    install_suv_threshold_model,
    marker_mask,
    marker_runner,
    pet_stow_body,
    write_marker_phantom,
)

AXIAL_MARKERS = {"left": "R", "right": "L", "top": "A", "bottom": "P"}


def _mm(value: float) -> str:
    """A length as the viewer writes it (one decimal, a real minus sign)."""
    return f"{value:.1f}".replace("-", "\u2212")


def _grey(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L")).astype(float)


def _markers(page: Any) -> dict[str, str]:
    return {side: page.locator(f"#marker-{side}").inner_text() for side in AXIAL_MARKERS}


def _hover_voxel(page: Any, i: int, j: int) -> None:
    """Put the mouse on voxel (i, j) of the shown plane, where the page says it is drawn."""
    box = page.locator("#viewer-canvas").bounding_box()
    at = page.evaluate("([i, j]) => screenOf(i, j)", [i, j])
    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])


def _plane_z(volume: Volume, k: int) -> float:
    return float(volume.affine[2, 3] + k * volume.affine[2, 2])


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
            page.on("pageerror", lambda e: blocked.append(f"page error: {e}"))
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
            with_overlay = canvas.screenshot(path=str(shots / "overlay-on.png"))

            page.uncheck("#overlay-toggle")
            page.locator("#viewer-canvas[data-overlay='off']").wait_for()
            without_overlay = page.locator("#viewer-canvas").screenshot(
                path=str(shots / "overlay-off.png")
            )
            hottest = _check_viewer(page, server, data_dir, job_id, reader, values[4])
            page.select_option("#window-preset", label="SUVbw 0-10")
            page.check("#overlay-toggle")
            _hover_voxel(page, *hottest)
            page.screenshot(path=str(shots / "study.png"), full_page=True)  # cursor on SUVmax

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


def _check_viewer(
    page: Any, server: Server, data_dir: DataDir, job_id: str, reader: str, table_max: str
) -> tuple[int, int]:
    """Edge letters, plane position, presets, drag, wheel and the value under the cursor on
    STS_003; returns the in-plane indices of the lesion's hottest voxel (now shown)."""
    volume = read_volume(sorted(data_dir(PET_STUDY).glob("*.dcm")))
    suv, _ = to_suv(volume)
    job = httpx.get(
        f"{server.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {reader}"}
    ).json()
    mask = read_seg(server.state.results_root / job["results"]["seg"][0]["path"], volume)
    canvas = page.locator("#viewer-canvas")
    assert _markers(page) == AXIAL_MARKERS  # head-first supine axial
    k = int(canvas.get_attribute("data-slice"))
    assert page.locator("#slice-position").inner_text() == f"Loc {_mm(_plane_z(volume, k))} mm"

    # Presets: PET opens at SUV 0-5; 0-10 halves every unsaturated grey level.
    assert page.locator("#window-label").inner_text() == "W 5.00 L 2.50 SUVbw"
    narrow = _grey(canvas.screenshot())
    page.select_option("#window-preset", label="SUVbw 0-10")
    page.locator("#viewer-canvas[data-high='10']").wait_for()
    assert page.locator("#window-label").inner_text() == "W 10.00 L 5.00 SUVbw"
    wide = _grey(canvas.screenshot())
    unsaturated = (narrow > 20) & (narrow < 235)
    assert unsaturated.sum() > 1000
    assert np.median(wide[unsaturated] / narrow[unsaturated]) == pytest.approx(0.5, abs=0.03)

    # A drag 128 px to the right widens the window by half its width (256 px double it).
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 256, box["y"] + 256)
    page.mouse.down()
    page.mouse.move(box["x"] + 384, box["y"] + 256, steps=4)
    page.mouse.up()
    assert page.locator("#window-label").inner_text() == "W 15.00 L 5.00 SUVbw"
    assert page.locator("#window-preset").input_value() == "custom"

    # The wheel steps one plane down, towards the feet (OHIF's direction; stored feet first).
    start = int(canvas.get_attribute("data-slice"))
    page.mouse.wheel(0, 100)
    page.locator(f"#viewer-canvas[data-slice='{start - 1}']").wait_for()

    # The value under the cursor on the lesion's hottest voxel is the SUVmax the job measured.
    hottest = np.where(mask.by_number(1).mask, suv, -np.inf)
    i, j, k = (int(n) for n in np.unravel_index(np.argmax(hottest), suv.shape))
    # Planes are numbered from the head down, as in OHIF: STS_003 was stored from the feet up.
    slices = volume.shape[2]
    page.locator("#slice-range").fill(str(slices - 1 - k))
    page.locator(f"#viewer-canvas[data-slice='{k}']").wait_for()
    assert page.locator("#slice-label").inner_text() == f"{slices - k} / {slices}"
    _hover_voxel(page, i, j)
    assert page.locator("#cursor-voxel").inner_text() == f"voxel ({i}, {j}, {k})"
    assert page.locator("#cursor-value").inner_text() == f"{suv[i, j, k]:.2f} SUVbw" == table_max
    lps = volume.affine @ np.array([i, j, k, 1.0])
    shown = ", ".join(_mm(v) for v in lps[:3])
    assert page.locator("#cursor-patient").inner_text() == f"LPS ({shown}) mm"
    assert page.locator("#cursor-segment").inner_text() == "segment 1 FDG-avid lesion"
    assert page.locator("#slice-position").inner_text() == f"Loc {_mm(_plane_z(volume, k))} mm"
    return i, j


def test_viewer_shows_feet_first_and_prone_series_as_radiologists_read_them(
    server: Server, tmp_path: Path
) -> None:
    """A marker at the patient's right-anterior corner appears at the screen's top left, and
    the value under the cursor is the HU or SUV fedseg reads there."""
    require_browser()
    from playwright.sync_api import sync_playwright

    settings = server.state.settings
    with server.state.factory() as session, session.begin():
        sender, _ = create_token(session, "pacs", Role.SENDER)
        reader, _ = create_token(session, "physicist", Role.READER)
    shots = tmp_path / "shots"
    shots.mkdir()
    jobs = {}
    for modality, geometry in (("CT", "feet-first"), ("PT", "prone")):
        folder = tmp_path / geometry
        volume = write_marker_phantom(folder, modality, geometry)
        files = sorted(folder.glob("*.dcm"))
        body, content_type = write_related([f.read_bytes() for f in files], "application/dicom")
        stored = httpx.post(
            f"{server.url}/dicomweb/studies",
            content=body,
            headers={"Content-Type": content_type, "Authorization": f"Bearer {sender}"},
            timeout=60,
        )
        assert stored.status_code == 200, stored.text
        jobs[geometry] = (
            finish_job(server.state, settings, volume.study_instance_uid, marker_runner),
            volume,
        )
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/dashboard/")
            page.fill("#token-input", reader)
            page.click("#token-form button[type=submit]")
            for geometry, (job_id, volume) in jobs.items():
                page.goto(f"{server.url}/dashboard/#job/{job_id}")
                series = volume.series_instance_uid
                page.locator(f"#layer-select option[title='{series}']").wait_for(state="attached")
                page.locator("#viewer-canvas[data-slice]").wait_for()
                page.uncheck("#overlay-toggle")
                page.locator("#viewer-canvas[data-overlay='off']").wait_for()
                _check_marker_side(page, geometry, volume)
                page.locator(".viewport").screenshot(path=str(shots / f"viewer-{geometry}.png"))
        finally:
            browser.close()
    assert not errors, errors
    keep = os.environ.get("FEDSEG_KEEP_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, Path(keep), dirs_exist_ok=True)


def _check_marker_side(page: Any, geometry: str, volume: Volume) -> None:
    canvas = page.locator("#viewer-canvas")
    assert _markers(page) == AXIAL_MARKERS, geometry
    k = int(canvas.get_attribute("data-slice"))
    assert page.locator("#slice-position").inner_text() == f"Loc {_mm(_plane_z(volume, k))} mm"
    grey = _grey(canvas.screenshot())
    rows, columns = np.nonzero(grey > 200)  # the marker; the background is mid grey
    assert rows.size > 100, geometry
    height, width = grey.shape
    # The patient's right-anterior corner: the screen's top left, every pixel of it.
    assert rows.max() < height / 2 and columns.max() < width / 2, (geometry, rows, columns)

    # Under the cursor, where the marker is drawn: a marker voxel, its own value.
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + columns.mean(), box["y"] + rows.mean())
    text = page.locator("#cursor-voxel").inner_text()
    i, j, kk = (int(n) for n in text.removeprefix("voxel (").removesuffix(")").split(", "))
    assert kk == k and marker_mask(volume.affine)[i, j, k], (geometry, text)
    if volume.modality == "CT":
        expected = f"{int(volume.array[i, j, k])} HU"
    else:
        suv, _ = to_suv(volume)
        expected = f"{suv[i, j, k]:.2f} SUVbw"
    assert page.locator("#cursor-value").inner_text() == expected, geometry
