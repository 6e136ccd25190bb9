"""The dashboard's slice viewer: a job's image series and its SEG, plane by plane (reader).

``GET /v1/jobs/{id}/viewer`` lists the job's SEG results as layers (the series each was made
on, its grid and segments); ``.../viewer/{layer}/image/{k}`` and ``.../labels/{k}`` are 8-bit
greyscale PNGs of plane ``k``: windowed image values and segment numbers. The page colours the
labels itself, so the overlay can be toggled without another request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from service.api.deps import Reader, SessionDep, StateDep, audit_access
from service.api.slice_stack import SliceStack, build_stack, encode_png, referenced_series
from service.api.state import ServerState
from service.db.models import Instance, InstanceOrigin, Job

router = APIRouter(prefix="/v1/jobs", tags=["viewer"])


def _job(session: SessionDep, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


def _seg_path(state: ServerState, job: Job, layer: int) -> Path:
    entries = job.results.get("seg", [])
    if not 0 <= layer < len(entries):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job.id} has no SEG layer {layer} ({len(entries)})"
        )
    path = (state.results_root / entries[layer]["path"]).resolve()
    if state.results_root.resolve() not in path.parents or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"SEG of job {job.id} is gone")
    return path


def _stack(state: ServerState, job: Job, layer: int) -> SliceStack:
    seg_path = _seg_path(state, job, layer)

    def build() -> SliceStack:
        series = referenced_series(seg_path)
        with state.factory() as session:
            digests = session.scalars(
                select(Instance.sha256).where(
                    Instance.series_instance_uid == series,
                    Instance.origin == InstanceOrigin.RECEIVED.value,
                )
            ).all()
        if not digests:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"the images of series {series} are no longer stored"
            )
        paths = [state.store.path_for(d) for d in sorted(set(digests))]
        return build_stack(paths, seg_path, state.settings)

    return state.viewer.get((job.id, layer), build)


def _layer(index: int, stack: SliceStack) -> dict[str, Any]:
    columns, rows, slices = stack.image.shape
    return {
        "layer": index,
        "series_instance_uid": stack.series_instance_uid,
        "modality": stack.modality,
        "columns": columns,
        "rows": rows,
        "slices": slices,
        "spacing": list(stack.spacing),
        "initial_slice": stack.busiest_slice(),
        "segments": [{"number": s.number, "name": s.name} for s in stack.segments],
    }


@router.get("/{job_id}/viewer", summary="A job's viewer layers")
async def viewer(
    job_id: str, principal: Reader, state: StateDep, session: SessionDep
) -> dict[str, Any]:
    """The job's SEG results as viewer layers: series, grid, segments, a slice to start on."""
    job = _job(session, job_id)
    layers = []
    for index in range(len(job.results.get("seg", []))):
        stack = await run_in_threadpool(_stack, state, job, index)
        layers.append(_layer(index, stack))
    audit_access(state, principal, "viewer open", job.study_instance_uid, job_id)
    return {"job_id": job_id, "layers": layers}


async def _plane(
    job_id: str, layer: int, which: str, k: int, principal: Any, state: ServerState, session: Any
) -> Response:
    job = _job(session, job_id)
    stack = await run_in_threadpool(_stack, state, job, layer)
    try:
        plane = stack.plane(which, k)
    except IndexError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    audit_access(state, principal, f"viewer {which}", job.study_instance_uid, f"{job_id} k={k}")
    return Response(
        encode_png(plane), media_type="image/png", headers={"Cache-Control": "no-store"}
    )


@router.get("/{job_id}/viewer/{layer}/image/{k}", summary="An image plane (PNG)")
async def image_plane(
    job_id: str, layer: int, k: int, principal: Reader, state: StateDep, session: SessionDep
) -> Response:
    """Plane ``k`` of the layer's series, windowed to 8 bits."""
    return await _plane(job_id, layer, "image", k, principal, state, session)


@router.get("/{job_id}/viewer/{layer}/labels/{k}", summary="A label plane (PNG)")
async def label_plane(
    job_id: str, layer: int, k: int, principal: Reader, state: StateDep, session: SessionDep
) -> Response:
    """Plane ``k`` of the layer's SEG: each pixel holds its segment number (0 = none)."""
    return await _plane(job_id, layer, "labels", k, principal, state, session)
