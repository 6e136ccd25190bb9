"""Jobs: create (uploaded or already received study), retry, status, results.

A sender learns no more than it sent: creating a job answers only its id and state, and a
sender may queue (or retry) only studies it stored itself; any other study UID answers the same
404 as one that does not exist. Readers see status, errors and results with server paths
removed (:mod:`service.api.redaction`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.deps import Reader, Sender, SessionDep, StateDep, audit_access
from service.api.job_files import find_job, result_file
from service.api.redaction import Redactor, server_redactor
from service.api.responses import AUTH, errors
from service.api.stow_body import store_body
from service.auth.tokens import Principal, Role
from service.db.models import Delivery, Instance, Job
from service.errors import ConflictError, FedsegError, NotFoundError
from service.jobs import queue
from service.jobs.intake import enqueue_study, study_input_key
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


class JobTicket(BaseModel):
    """What a sender learns about the job it created: its id and state, nothing else."""

    id: str
    study_instance_uid: str
    state: str


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
    qc: dict[str, Any] | None = None  # intended use and structure QC of each series


def job_qc(results_root: Path, job: Job) -> dict[str, Any] | None:
    """QC of a job from its summary.json: skipped series and flagged or withheld structures."""
    try:
        summary = json.loads(result_file(results_root, job, "summary", 0).read_text())
    except (FedsegError, OSError, ValueError):
        return None
    series = []
    for entry in summary.get("series", []):
        qc = entry.get("qc") or {}
        series.append(
            {
                "series_instance_uid": entry.get("series_instance_uid"),
                "model": entry.get("model"),
                "intended_use": entry.get("intended_use", ""),
                "skipped": bool(entry.get("skipped")),
                "reasons": (entry.get("applicability") or {}).get("reasons", []),
                "counts": qc.get("counts", {}),
                "withheld": qc.get("withheld", []),
                "structures": [
                    {k: s.get(k) for k in ("name", "status", "reasons")}
                    for s in qc.get("structures", [])
                ],
            }
        )
    flagged = any(
        s["skipped"] or any(x["status"] != "pass" for x in s["structures"]) for s in series
    )
    return {"flagged": flagged, "series": series}


def _view(
    job: Job,
    deliveries: list[Delivery],
    redactor: Redactor,
    qc: dict[str, Any] | None = None,
) -> JobView:
    return JobView(
        id=job.id,
        study_instance_uid=job.study_instance_uid,
        state=job.state,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=redactor.message(job.error) if job.error else None,
        progress=job.progress,
        timings=job.timings,
        results=job.results,
        deliveries=[
            DeliveryView(
                destination=d.destination,
                state=d.state,
                attempts=d.attempts,
                last_error=redactor.message(d.last_error) if d.last_error else None,
                delivered_at=d.delivered_at,
            )
            for d in deliveries
        ],
        qc=qc,
    )


def _ticket(job: Job) -> JobTicket:
    return JobTicket(id=job.id, study_instance_uid=job.study_instance_uid, state=job.state)


def _check_sender_stored(session: Session, principal: Principal, study_uid: str) -> None:
    """404 unless an admin asks, or this sender stored an instance of the study itself."""
    if principal.role is Role.ADMIN:
        return
    # ingest() records the sender of each instance as "stow:<token name>" or "upload:<...>".
    sources = [f"{via}:{principal.name}"[:64] for via in ("stow", "upload")]
    stored = session.scalars(
        select(Instance.sop_instance_uid)
        .where(Instance.study_instance_uid == study_uid, Instance.source.in_(sources))
        .limit(1)
    ).first()
    if stored is None:
        raise NotFoundError(f"no instances of study {study_uid} have been received")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Create a job",
    responses=AUTH | errors(400, 404, 413, 415, 422, 507),
)
async def create_job(request: Request, principal: Sender, state: StateDep) -> JobTicket:
    """Queue a study: JSON ``{"study_instance_uid"}``, or a multipart/related upload.

    A sender may name only a study it stored itself (STOW-RS or upload with a token of the same
    name); studies received by C-STORE are queued by their quiet period, or by an admin.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            wanted = JobRequest.model_validate_json(await request.body())
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from exc
        studies = [wanted.study_instance_uid]
        with state.factory() as session:
            _check_sender_stored(session, principal, studies[0])
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
        raise NotFoundError(str(exc)) from exc
    audit_access(state, principal, "job create", studies[0], job.id)
    return _ticket(job)


@router.post(
    "/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a failed job again",
    responses=AUTH | errors(404, 409),
)
def retry_job(job_id: str, principal: Sender, state: StateDep, session: SessionDep) -> JobTicket:
    """Queue a failed job again, with fresh attempts, on the same input.

    409 when the job has not failed, or when its study's instances changed since (then ``POST
    /v1/jobs`` queues a job for the current ones). A sender may retry only jobs of studies it
    stored; other jobs answer 404.
    """
    job = find_job(session, job_id)
    _check_sender_stored(session, principal, job.study_instance_uid)
    if job.state != queue.JobState.FAILED.value:
        raise ConflictError(f"job {job_id} is {job.state}; only a failed job can be retried")
    if study_input_key(session, job.study_instance_uid) != job.input_key:
        raise ConflictError(
            f"the instances of study {job.study_instance_uid} changed since job {job_id} ran; "
            "POST /v1/jobs queues a job for the current ones"
        )
    if not queue.retry(state.factory, job_id, state.policy):
        raise ConflictError(f"job {job_id} is no longer failed; only a failed job can be retried")
    audit_access(state, principal, "job retry", job.study_instance_uid, job_id)
    session.expire_all()
    return _ticket(find_job(session, job_id))


@router.get("", summary="List recent jobs", responses=AUTH)
def list_jobs(
    principal: Reader, state: StateDep, session: SessionDep, limit: int = 50
) -> list[JobView]:
    """The newest jobs first."""
    jobs = session.scalars(
        select(Job).order_by(Job.created_at.desc()).limit(max(1, min(limit, 500)))
    ).all()
    audit_access(state, principal, "job list", None, f"{len(jobs)} jobs")
    redactor = server_redactor(state.settings)
    return [_view(j, [], redactor, job_qc(state.results_root, j)) for j in jobs]


@router.get("/{job_id}", summary="A job's status", responses=AUTH | errors(404))
def get_job(job_id: str, principal: Reader, state: StateDep, session: SessionDep) -> JobView:
    """Status, per-stage progress, timings, errors, results and delivery status."""
    job = find_job(session, job_id)
    deliveries = session.scalars(select(Delivery).where(Delivery.job_id == job_id)).all()
    audit_access(state, principal, "job view", job.study_instance_uid, job_id)
    qc = job_qc(state.results_root, job)
    return _view(job, list(deliveries), server_redactor(state.settings), qc)


@router.get("/{job_id}/results/{kind}", summary="A job's result file", responses=AUTH | errors(404))
def get_result(
    job_id: str,
    kind: ResultKind,
    principal: Reader,
    state: StateDep,
    session: SessionDep,
    index: int = 0,
) -> Response:
    """The ``index``-th result of a kind: seg, rtstruct, sr, measurements or summary.

    JSON results are returned with server paths reduced to file names.
    """
    job = find_job(session, job_id)
    path = result_file(state.results_root, job, kind, index)
    audit_access(state, principal, f"result {kind}", job.study_instance_uid, job_id)
    if path.suffix == ".json":
        redactor = server_redactor(state.settings)
        return JSONResponse(redactor.json(json.loads(path.read_text())))
    return FileResponse(path, media_type=_MEDIA.get(path.suffix, "application/octet-stream"))
