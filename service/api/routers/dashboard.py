"""The dashboard: static page (no patient data, no token) and its viewer data (reader)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(tags=["dashboard"])

WEB_ROOT = Path(__file__).resolve().parent.parent.parent / "web"
_MEDIA = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
#: The dashboard's static files: code only, no patient data; every data call needs a token.
STATIC_PATHS = frozenset({"/", "/dashboard/", "/dashboard/{name}"})


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """Send browsers to the dashboard."""
    return RedirectResponse("/dashboard/")


@router.get("/dashboard/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard page."""
    return FileResponse(WEB_ROOT / "index.html", media_type="text/html")


@router.get("/dashboard/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    """A static file of the dashboard (flat folder; no path traversal possible)."""
    path = WEB_ROOT / name
    if "/" in name or name.startswith(".") or path.suffix not in _MEDIA or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return FileResponse(path, media_type=_MEDIA[path.suffix])
