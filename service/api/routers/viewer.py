"""The dashboard's slice viewer: a job's image series and its SEG, plane by plane (reader).

``GET /v1/jobs/{id}/viewer`` lists the job's SEG results as layers (the series each was made
on, its grid and segments); ``.../viewer/{layer}/image/{k}`` and ``.../labels/{k}`` are 8-bit
greyscale PNGs of plane ``k``: windowed image values and segment numbers. The page colours the
labels itself, so the overlay can be toggled without another request. The images are the
instances the SEG references, found in the job's own study (:mod:`service.api.job_files`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool

from service.api.deps import Reader, SessionDep, StateDep, audit_access
from service.api.job_files import find_job, result_file, seg_images
from service.api.responses import AUTH, errors
from service.api.slice_stack import SliceStack, build_stack, encode_png, seg_source
from service.api.state import ServerState
from service.db.models import Job

router = APIRouter(prefix="/v1/jobs", tags=["viewer"])


def _stack(state: ServerState, job: Job, layer: int) -> SliceStack:
    seg_path = result_file(state.results_root, job, "seg", layer)

    def build() -> SliceStack:
        # The images are the ones this SEG was made on, looked up in this job's study only.
        with state.factory() as session:
            rows = seg_images(session, job, seg_source(seg_path))
        paths = [state.store.path_for(row.sha256) for row in rows]
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


@router.get(
    "/{job_id}/viewer", summary="A job's viewer layers", responses=AUTH | errors(404, 409, 422)
)
async def viewer(
    job_id: str, principal: Reader, state: StateDep, session: SessionDep
) -> dict[str, Any]:
    """The job's SEG results as viewer layers: series, grid, segments, a slice to start on."""
    job = find_job(session, job_id)
    layers = []
    for index in range(len(job.results.get("seg", []))):
        stack = await run_in_threadpool(_stack, state, job, index)
        layers.append(_layer(index, stack))
    audit_access(state, principal, "viewer open", job.study_instance_uid, job_id)
    return {"job_id": job_id, "layers": layers}


async def _plane(
    job_id: str, layer: int, which: str, k: int, principal: Any, state: ServerState, session: Any
) -> Response:
    job = find_job(session, job_id)
    stack = await run_in_threadpool(_stack, state, job, layer)
    try:
        plane = stack.plane(which, k)
    except IndexError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    audit_access(state, principal, f"viewer {which}", job.study_instance_uid, f"{job_id} k={k}")
    return Response(
        encode_png(plane), media_type="image/png", headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/{job_id}/viewer/{layer}/image/{k}",
    summary="An image plane (PNG)",
    responses=AUTH | errors(404, 409, 422),
)
async def image_plane(
    job_id: str, layer: int, k: int, principal: Reader, state: StateDep, session: SessionDep
) -> Response:
    """Plane ``k`` of the layer's series, windowed to 8 bits."""
    return await _plane(job_id, layer, "image", k, principal, state, session)


@router.get(
    "/{job_id}/viewer/{layer}/labels/{k}",
    summary="A label plane (PNG)",
    responses=AUTH | errors(404, 409, 422),
)
async def label_plane(
    job_id: str, layer: int, k: int, principal: Reader, state: StateDep, session: SessionDep
) -> Response:
    """Plane ``k`` of the layer's SEG: each pixel holds its segment number (0 = none)."""
    return await _plane(job_id, layer, "labels", k, principal, state, session)
