"""The OHIF Viewer at ``/viewer``, configured against fedseg's own DICOMweb.

``make`` installs the pinned ``@ohif/app`` build into ``FEDSEG_OHIF_DIR``. Its files are code
only, served without a token like the dashboard's; every DICOMweb call the viewer makes carries
the reader token that the dashboard keeps in the browser's session storage (or OHIF's own
``?token=`` parameter). ``app-config.js`` is written here: one data source, this server's
``/dicomweb``, and a small extension that hands OHIF the token.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from service.api.deps import StateDep

router = APIRouter(tags=["viewer"])

PREFIX = "/viewer"
#: The viewer's static files: code only, no patient data; its DICOMweb calls need a token.
OHIF_PATHS = frozenset({PREFIX, f"{PREFIX}/", f"{PREFIX}/{{path:path}}"})
#: Session-storage key of the reader token, shared with the dashboard (dashboard.js).
TOKEN_KEY = "fedseg-token"
_MEDIA = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".map": "application/json",
    ".txt": "text/plain",
}
#: Files of the build fedseg replaces or does not serve (its own config, the service worker).
_REPLACED = {"app-config.js", "index.html", "sw.js", "init-service-worker.js"}


#: The build's file names carry content hashes, so a browser may keep them for a day.
_CACHE = {"Cache-Control": "private, max-age=86400"}
#: webpack's public path in OHIF's bundles: chunks, workers and wasm load from the site root.
_PUBLIC_PATH = b'__webpack_require__.p = "/";'


def rebased(code: bytes) -> bytes:
    """A bundle or stylesheet that loads its chunks and fonts from ``/viewer/``, not ``/``."""
    code = code.replace(_PUBLIC_PATH, b'__webpack_require__.p = "%s/";' % PREFIX.encode())
    return code.replace(b"url(/", b"url(%s/" % PREFIX.encode())


def _dist(state: StateDep) -> Path:
    folder = state.settings.ohif_dir
    if not (folder / "index.html").is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"the OHIF Viewer is not installed in {folder.name}: run `make ohif` (or set "
            "FEDSEG_OHIF_DIR to the dist folder of @ohif/app)",
        )
    return folder


def index_html(dist: Path) -> str:
    """OHIF's index.html rebased under ``/viewer/``, without its service worker."""
    text = (dist / "index.html").read_text(encoding="utf-8")
    text = re.sub(r'<script[^>]*init-service-worker\.js"[^>]*></script>', "", text)
    text = re.sub(r'(src|href)="/(?!/)', rf'\1="{PREFIX}/', text)
    text = text.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}/"')
    # Chunks load relative to the document: pin the base for deep routes (/viewer/viewer/...).
    return text.replace("<head>", f'<head><base href="{PREFIX}/">', 1)


def app_config() -> str:
    """``window.config`` for OHIF: fedseg's DICOMweb as the only data source, with the token."""
    root = "@ROOT@"
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "fedseg",
        "configuration": {
            "friendlyName": "fedseg",
            "name": "fedseg",
            "wadoUriRoot": root,
            "qidoRoot": root,
            "wadoRoot": root,
            "qidoSupportsIncludeField": True,
            "supportsReject": False,
            "supportsStow": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata",
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
            # OHIF's whole-instance SEG path misplaces BINARY frames that do not start on a
            # byte (rows x columns not a multiple of 8); per-frame retrieval re-packs each.
            "loadMultiframeAsPart10": False,
        },
    }
    settings = {
        "routerBasename": PREFIX,
        "showStudyList": True,
        "modes": [],
        "customizationService": {},
        "defaultDataSourceName": "fedseg",
        "dataSources": [source],
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumberOfWebWorkers": 3,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 10, "prefetch": 10},
    }
    return f"""// Written by fedseg ({PREFIX}/app-config.js): OHIF against this server's DICOMweb.
(function () {{
  var key = {json.dumps(TOKEN_KEY)};
  var root = window.location.origin + "/dicomweb";  // the origin the browser used
  var config = {json.dumps(settings, indent=2).replace('"@ROOT@"', "root")};
  // Hands OHIF the reader token the dashboard keeps for this browser session.
  config.extensions = [{{
    id: "fedseg-token",
    preRegistration: function (context) {{
      var auth = context.servicesManager.services.userAuthenticationService;
      auth.setServiceImplementation({{
        getAuthorizationHeader: function () {{
          var token = window.sessionStorage.getItem(key);
          return token ? {{ Authorization: "Bearer " + token }} : undefined;
        }},
      }});
    }},
  }}];
  // A missing or refused token: back to the dashboard to enter one, then here again.
  config.httpErrorHandler = function (error) {{
    if (error && (error.status === 401 || error.status === 403)) {{
      var back = window.location.pathname + window.location.search;
      window.location.assign("/dashboard/?next=" + encodeURIComponent(back));
    }}
  }};
  window.config = config;
}})();
"""


@router.get(PREFIX, include_in_schema=False)
def viewer_root() -> RedirectResponse:
    """``/viewer`` → ``/viewer/`` (OHIF's study list)."""
    return RedirectResponse(f"{PREFIX}/")


@router.get(f"{PREFIX}/", include_in_schema=False)
def viewer_index(state: StateDep) -> HTMLResponse:
    """OHIF's page."""
    return HTMLResponse(index_html(_dist(state)))


@router.get(f"{PREFIX}/{{path:path}}", include_in_schema=False)
def viewer_file(path: str, state: StateDep) -> Response:
    """A file of the OHIF build, fedseg's ``app-config.js``, or the page for OHIF's routes."""
    dist = _dist(state)
    if path == "app-config.js":
        return Response(app_config(), media_type="text/javascript")
    target = (dist / path).resolve()
    inside = dist.resolve() in target.parents
    if inside and target.is_file() and path not in _REPLACED:
        media = _MEDIA.get(target.suffix.lower(), "application/octet-stream")
        if target.suffix in {".js", ".css"}:
            return Response(rebased(target.read_bytes()), media_type=media, headers=_CACHE)
        return FileResponse(target, media_type=media, headers=_CACHE)
    if Path(path).suffix.lower() in _MEDIA and Path(path).suffix.lower() != ".html":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such viewer file {path}")
    # OHIF's own routes (/viewer/viewer?StudyInstanceUIDs=..., /viewer/segmentation?...).
    return HTMLResponse(index_html(dist))
