"""Health (no token), readiness (no token) and Prometheus metrics (any token)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from service.api.deps import AnyRole, StateDep
from service.api.responses import AUTH, errors
from service.db.models import Job

router = APIRouter(tags=["health"])

#: Paths that need no token: liveness and readiness probes only.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness", responses=errors(503))
def readyz(state: StateDep, response: Response) -> dict[str, str]:
    """The database answers and the store is writable."""
    try:
        with state.engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "database unavailable", "error": type(exc).__name__}
    if not state.store.root.is_dir():
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "instance store missing"}
    return {"status": "ready"}


@router.get("/metrics", summary="Prometheus metrics", responses=AUTH)
def metrics(_: AnyRole, state: StateDep) -> Response:
    """Request and instance counters, and job counts by state."""
    with state.factory() as session:
        counts = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    lines = ["# HELP fedseg_jobs Jobs by state", "# TYPE fedseg_jobs gauge"]
    lines += [f'fedseg_jobs{{state="{s}"}} {n}' for s, n in sorted(counts.items())]
    body = generate_latest(state.metrics.registry).decode() + "\n".join(lines) + "\n"
    return Response(body, media_type=CONTENT_TYPE_LATEST)
