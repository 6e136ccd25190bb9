"""The FastAPI application: ``create_app(settings)`` with a lifespan that opens the database.

Routes live in one router per resource (``service/api/routers``); fedseg errors become HTTP
statuses in one handler here. ``fedseg serve`` runs this app with uvicorn and, by default, an
in-process worker and DIMSE SCP, wired in :mod:`service.server`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError

from service.api.deps import ANY_ROLE
from service.api.redaction import server_redactor
from service.api.routers import (
    dashboard,
    dicomweb,
    health,
    jobs,
    models,
    ohif,
    qido,
    routing,
    viewer,
    wado_frames,
)
from service.api.security_headers import DEFAULT_POLICY, HeaderPolicy
from service.api.state import ServerState
from service.config import Settings
from service.db.migrate import upgrade
from service.errors import FedsegError
from service.library_logging import route_library_warnings
from service.server import Background

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    background: tuple[Background, ...] = (),
    headers: HeaderPolicy = DEFAULT_POLICY,
) -> FastAPI:
    """Build the API for ``settings``; ``background`` services run for the app's lifetime.

    ``headers`` chooses the security headers (CSP, framing, sniffing) per route prefix.
    """
    route_library_warnings()  # pydicom/highdicom quote header values: withhold them in logs

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState.from_settings(settings)
        upgrade(state.engine)
        if not settings.public_url and settings.api_host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning(
                "FEDSEG_PUBLIC_URL is not set: RetrieveURLs name %s; set it to the address "
                "clients use",
                settings.resolved_public_url(),
            )
        app.state.server = state
        stoppers = [start(state) for start in background]
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()
            state.engine.dispose()

    # No Swagger/ReDoc pages: they load scripts from a CDN, and a hospital network must see
    # only the traffic it asked for. The OpenAPI document itself needs a token.
    app = FastAPI(
        title="fedseg",
        summary="DICOM segmentation service: DICOMweb, DIMSE, jobs and results",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    for module in (
        health,
        dicomweb,
        qido,
        wado_frames,
        jobs,
        viewer,
        models,
        routing,
        dashboard,
        ohif,
    ):
        app.include_router(module.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(ANY_ROLE)])
    def openapi() -> dict[str, Any]:
        return get_openapi(title=app.title, version="1", routes=app.routes)

    redactor = server_redactor(settings)

    @app.exception_handler(FedsegError)
    async def fedseg_error(request: Request, exc: FedsegError) -> JSONResponse:
        # The one place where fedseg errors become HTTP statuses (the class says which).
        if exc.http_status >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": redactor.message(str(exc))}, status_code=exc.http_status)

    @app.exception_handler(OperationalError)
    async def database_unavailable(_: Request, exc: OperationalError) -> JSONResponse:
        # The database is down or restarting: nothing was stored, so the sender should retry.
        logger.warning("database unavailable: %s", type(exc.orig).__name__)
        return JSONResponse(
            {"detail": "the database is unavailable; nothing was stored, retry shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in headers.headers_for(request.url.path).items():
            response.headers.setdefault(name, value)
        return response

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        server: ServerState | None = getattr(request.app.state, "server", None)
        route = request.scope.get("route")
        if server is not None:
            path = getattr(route, "path", "unmatched")
            server.metrics.requests.labels(request.method, path, response.status_code).inc()
        return response

    return app
