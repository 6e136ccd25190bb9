"""Jobs: create (uploaded or already received study), status, results."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from service.api.deps import Reader, Sender, SessionDep, StateDep, audit_access
from service.api.responses import AUTH, errors
from service.api.routers.dicomweb import store_body
from service.db.models import Delivery, Job
from service.jobs.intake import enqueue_study
from service.results.kinds import ResultKind

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_MEDIA = {
    ".dcm": "application/dicom",
    ".json": "application/json",
    ".png": "image/png",
    ".npz": "application/octet-stream",
}


class JobRequest(BaseModel):
    """Segment a study that the server has already received."""

    study_instance_uid: str = Field(min_length=1, max_length=64)


class DeliveryView(BaseModel):
    """Where a job's results went."""

    destination: str
    state: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class JobView(BaseModel):
    """A job's status, progress, timings, errors, results and deliveries."""

    id: str
    study_instance_uid: str
    state: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    progress: dict[str, Any]
    timings: dict[str, Any]
    results: dict[str, Any]
    deliveries: list[DeliveryView] = []


def _view(job: Job, deliveries: list[Delivery]) -> JobView:
    return JobView(
        id=job.id,
        study_instance_uid=job.study_instance_uid,
        state=job.state,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        progress=job.progress,
        timings=job.timings,
        results=job.results,
        deliveries=[
            DeliveryView(
                destination=d.destination,
                state=d.state,
                attempts=d.attempts,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
            )
            for d in deliveries
        ],
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a job",
    responses=AUTH | errors(400, 404, 413, 415, 422, 507),
)
async def create_job(request: Request, principal: Sender, state: StateDep) -> JobView:
    """Queue a study: JSON ``{"study_instance_uid"}``, or a multipart/related upload."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            wanted = JobRequest.model_validate_json(await request.body())
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
        studies = [wanted.study_instance_uid]
    else:
        stored, failed = await store_body(request, state, f"upload:{principal.name}")
        if failed or not stored:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_ENTITY,
                f"{len(failed)} uploaded part(s) are not storable DICOM instances",
            )
        studies = sorted({o.study_instance_uid for o in stored})
        if len(studies) != 1:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "upload one study per job")
    try:
        job = await run_in_threadpool(enqueue_study, state.factory, studies[0], state.policy)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    audit_access(state, principal, "job create", studies[0], job.id)
    return _view(job, [])


@router.get("", summary="List recent jobs", responses=AUTH)
def list_jobs(
    principal: Reader, state: StateDep, session: SessionDep, limit: int = 50
) -> list[JobView]:
    """The newest jobs first."""
    jobs = session.scalars(
        select(Job).order_by(Job.created_at.desc()).limit(max(1, min(limit, 500)))
    ).all()
    audit_access(state, principal, "job list", None, f"{len(jobs)} jobs")
    return [_view(j, []) for j in jobs]


def _job(session: SessionDep, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


@router.get("/{job_id}", summary="A job's status", responses=AUTH | errors(404))
def get_job(job_id: str, principal: Reader, state: StateDep, session: SessionDep) -> JobView:
    """Status, per-stage progress, timings, errors, results and delivery status."""
    job = _job(session, job_id)
    deliveries = session.scalars(select(Delivery).where(Delivery.job_id == job_id)).all()
    audit_access(state, principal, "job view", job.study_instance_uid, job_id)
    return _view(job, list(deliveries))


@router.get("/{job_id}/results/{kind}", summary="A job's result file", responses=AUTH | errors(404))
def get_result(
    job_id: str,
    kind: ResultKind,
    principal: Reader,
    state: StateDep,
    session: SessionDep,
    index: int = 0,
) -> FileResponse:
    """The ``index``-th result of a kind: seg, rtstruct, sr, measurements or summary."""
    job = _job(session, job_id)
    entries = job.results.get(kind, [])
    if not 0 <= index < len(entries):
        known = ", ".join(sorted(job.results)) or "none yet"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job_id} has no {kind} result {index} ({known})"
        )
    path = (state.results_root / entries[index]["path"]).resolve()
    if state.results_root.resolve() not in path.parents or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"result file of job {job_id} is gone")
    audit_access(state, principal, f"result {kind}", job.study_instance_uid, job_id)
    return FileResponse(path, media_type=_MEDIA.get(path.suffix, "application/octet-stream"))


def measurements_of(results_root: Path, job: Job) -> list[Any]:
    """The parsed measurements.json files of a job (for the dashboard)."""
    return [
        json.loads((results_root / e["path"]).read_text())
        for e in job.results.get(ResultKind.MEASUREMENTS, [])
        if (results_root / e["path"]).is_file()
    ]
