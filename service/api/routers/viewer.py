"""The dashboard's slice viewer: a job's image series and its SEG, plane by plane (reader).

``GET /v1/jobs/{id}/viewer`` lists the job's SEG results as layers: the series each was made
on, its grid and voxel→LPS affine, the unit of its values, window presets, the screen layout
and edge letters of its planes (:mod:`service.api.plane_orientation`), each plane's position in
mm, and the segments. ``.../viewer/{layer}/values/{k}`` is plane ``k``'s values and
``.../labels/{k}`` its segment numbers, as raw little-endian arrays (rows × columns, DICOM
order; the layer says the value type, int16 or float32; labels are uint16), gzip-compressed
when the client accepts it. One plane per request, so a response is never larger than a plane.
The page windows the values and colours the labels itself. The images are the instances the
SEG references, found in the job's own study (:mod:`service.api.job_files`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from service.api.deps import Reader, SessionDep, StateDep, audit_access
from service.api.job_files import find_job, result_file, seg_images
from service.api.responses import AUTH, errors
from service.api.slice_stack import SliceStack, build_stack, seg_source
from service.api.state import ServerState
from service.db.models import Job
from service.pet.body_size import SuvType
from service.results.outputs import OutputOptions

router = APIRouter(prefix="/v1/jobs", tags=["viewer"])

#: gzip level of plane responses: label planes shrink a hundredfold even at the fastest level.
GZIP_LEVEL = 1


def measured_suv_type(state: ServerState, job: Job, seg_path: Path) -> SuvType:
    """The SUV type the job measured the SEG's series in (its measurements.json says).

    The report next to the SEG is the job's own; without one, the type results are written in.
    """
    for index in range(len(job.results.get("measurements", []))):
        path = result_file(state.results_root, job, "measurements", index)
        if path.parent != seg_path.parent:
            continue
        report = json.loads(path.read_text(encoding="utf-8"))
        suv = report.get("suv") if isinstance(report, dict) else None
        if isinstance(suv, dict) and suv.get("suv_type"):
            return SuvType(str(suv["suv_type"]))
    return OutputOptions().suv_type


def _stack(state: ServerState, job: Job, layer: int) -> SliceStack:
    seg_path = result_file(state.results_root, job, "seg", layer)

    def build() -> SliceStack:
        # The images are the ones this SEG was made on, looked up in this job's study only.
        with state.factory() as session:
            rows = seg_images(session, job, seg_source(seg_path))
        paths = [state.store.path_for(row.sha256) for row in rows]
        suv_type = measured_suv_type(state, job, seg_path)
        return build_stack(paths, seg_path, state.settings, suv_type)

    return state.viewer.get((job.id, layer), build)


def _layer(index: int, stack: SliceStack) -> dict[str, Any]:
    columns, rows, slices = stack.values.shape
    return {
        "layer": index,
        "series_instance_uid": stack.series_instance_uid,
        "modality": stack.modality,
        "columns": columns,
        "rows": rows,
        "slices": slices,
        "affine": stack.affine.tolist(),
        "unit": stack.unit,
        "value_type": stack.values.dtype.name,
        "value_range": [float(stack.values.min()), float(stack.values.max())],
        "presets": [p.as_dict() for p in stack.presets],
        "layout": stack.layout.as_dict(),
        "notes": list(stack.notes),
        "initial_slice": stack.busiest_slice(),
        "segments": [{"number": s.number, "name": s.name} for s in stack.segments],
    }


@router.get(
    "/{job_id}/viewer", summary="A job's viewer layers", responses=AUTH | errors(404, 409, 422)
)
async def viewer(
    job_id: str, principal: Reader, state: StateDep, session: SessionDep
) -> dict[str, Any]:
    """The job's SEG results as viewer layers: series, grid, unit, layout, segments."""
    job = find_job(session, job_id)
    layers = []
    for index in range(len(job.results.get("seg", []))):
        stack = await run_in_threadpool(_stack, state, job, index)
        layers.append(_layer(index, stack))
    audit_access(state, principal, "viewer open", job.study_instance_uid, job_id)
    return {"job_id": job_id, "layers": layers}


async def _plane(
    request: Request,
    job_id: str,
    layer: int,
    which: str,
    k: int,
    principal: Any,
    state: ServerState,
    session: Any,
) -> Response:
    job = find_job(session, job_id)
    stack = await run_in_threadpool(_stack, state, job, layer)
    try:
        body = stack.plane(which, k).tobytes()
    except IndexError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    audit_access(state, principal, f"viewer {which}", job.study_instance_uid, f"{job_id} k={k}")
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/octet-stream", headers=headers)


@router.get(
    "/{job_id}/viewer/{layer}/values/{k}",
    summary="A plane's values (raw array)",
    responses=AUTH | errors(404, 409, 422),
)
async def value_plane(
    request: Request,
    job_id: str,
    layer: int,
    k: int,
    principal: Reader,
    state: StateDep,
    session: SessionDep,
) -> Response:
    """Plane ``k`` of the layer's series in its unit (HU, SUV...), rows × columns."""
    return await _plane(request, job_id, layer, "values", k, principal, state, session)


@router.get(
    "/{job_id}/viewer/{layer}/labels/{k}",
    summary="A plane's segment numbers (raw uint16)",
    responses=AUTH | errors(404, 409, 422),
)
async def label_plane(
    request: Request,
    job_id: str,
    layer: int,
    k: int,
    principal: Reader,
    state: StateDep,
    session: SessionDep,
) -> Response:
    """Plane ``k`` of the layer's SEG: each pixel holds its segment number (0 = none)."""
    return await _plane(request, job_id, layer, "labels", k, principal, state, session)
