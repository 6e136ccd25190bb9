"""/viewer serves the OHIF build rebased under /viewer/ with fedseg's own configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import Settings
from tests.service.api.conftest import Api, api_settings

_INDEX = (
    '<!doctype html><html><head><link rel="manifest" href="/manifest.json">'
    '<script src="/app-config.js"></script>'
    '<script type="module" src="/init-service-worker.js"></script>'
    '<script>window.PUBLIC_URL="/"</script><script defer src="/app.bundle.1.js"></script>'
    "</head><body></body></html>"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    dist = tmp_path / "ohif"
    dist.mkdir()
    (dist / "index.html").write_text(_INDEX)
    (dist / "app.bundle.1.js").write_text('x;__webpack_require__.p = "/";y')
    (dist / "app.bundle.css").write_text("@font-face{src:url(/a.woff2)}")
    (dist / "app-config.js").write_text("window.config = {dataSources: ['public demo']};")
    (tmp_path / "secret.txt").write_text("outside")
    return api_settings(tmp_path, ohif_dir=dist)


def test_the_page_is_rebased_under_viewer(api: Api) -> None:
    page = api.client.get("/viewer/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert '<base href="/viewer/">' in html and 'window.PUBLIC_URL="/viewer/"' in html
    assert 'src="/viewer/app.bundle.1.js"' in html and 'href="/viewer/manifest.json"' in html
    assert "init-service-worker" not in html
    # OHIF's own routes get the same page (the SPA routes itself).
    assert api.client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3").text == html
    assert api.client.get("/viewer", follow_redirects=False).headers["location"] == "/viewer/"


def test_bundles_load_their_chunks_and_fonts_from_viewer(api: Api) -> None:
    script = api.client.get("/viewer/app.bundle.1.js")
    assert script.text == 'x;__webpack_require__.p = "/viewer/";y'
    assert script.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/viewer/app.bundle.css").text == "@font-face{src:url(/viewer/a.woff2)}"


def test_the_config_is_fedsegs_with_the_session_token(api: Api) -> None:
    config = api.client.get("/viewer/app-config.js").text
    assert "public demo" not in config
    assert 'window.location.origin + "/dicomweb"' in config
    assert '"qidoRoot": root' in config and '"routerBasename": "/viewer"' in config
    assert "sessionStorage.getItem(key)" in config and '"fedseg-token"' in config
    assert '"loadMultiframeAsPart10": false' in config


def test_no_file_outside_the_build_and_missing_files_are_404(api: Api) -> None:
    assert api.client.get("/viewer/..%2Fsecret.txt").status_code == 404
    assert api.client.get("/viewer/missing.js").status_code == 404


def test_a_missing_build_says_how_to_install_it(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.api.main import create_app

    settings = api_settings(tmp_path, ohif_dir=tmp_path / "absent")
    with TestClient(create_app(settings)) as client:
        response = client.get("/viewer/")
    assert response.status_code == 404 and "make ohif" in response.json()["detail"]
