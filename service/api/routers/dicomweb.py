"""DICOMweb: STOW-RS store and WADO-RS retrieval under ``/dicomweb`` (QIDO-RS: ``qido.py``)."""

from __future__ import annotations

import json

import pydicom
from fastapi import APIRouter, HTTPException, Request, Response, status
from sqlalchemy import select

from service.api import dicom_json as dj
from service.api.deps import Reader, Sender, StateDep, audit_access
from service.api.responses import AUTH, errors
from service.api.routers.wado_frames import metadata_json
from service.api.state import ServerState
from service.api.stow_body import failure_warning, store_body
from service.auth.tokens import Principal
from service.db.models import Instance
from service.dicomweb.multipart import write_related

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"


@router.post(
    "/studies",
    summary="STOW-RS: store instances",
    responses=AUTH | errors(202, 400, 409, 413, 415, 507),
)
async def stow(request: Request, principal: Sender, state: StateDep) -> Response:
    """Store the instances of a multipart/related body; every part is acknowledged."""
    stored, failed = await store_body(request, state, f"stow:{principal.name}")
    base = state.dicomweb_url
    referenced = [
        dj.reference(
            o.sop_class_uid,
            o.sop_instance_uid,
            url=dj.element(
                "RetrieveURL",
                "UR",
                f"{base}/studies/{o.study_instance_uid}/series/{o.series_instance_uid}"
                f"/instances/{o.sop_instance_uid}",
            ),
        )
        for o in stored
    ]
    for study_uid in sorted({o.study_instance_uid for o in stored}):
        audit_access(state, principal, "stow-rs store", study_uid, f"{len(stored)} instances")
    body = dj.sequence("ReferencedSOPSequence", referenced)
    if failed:
        body |= dj.sequence("FailedSOPSequence", failed)
    code = (
        status.HTTP_200_OK
        if not failed
        else (status.HTTP_202_ACCEPTED if stored else status.HTTP_409_CONFLICT)
    )
    headers = failure_warning(failed, len(stored) + len(failed))
    return Response(json.dumps(body), status_code=code, media_type=DICOM_JSON, headers=headers)


def _instances(state: ServerState, study: str | None, series: str | None = None) -> list[Instance]:
    query = select(Instance).order_by(Instance.series_instance_uid, Instance.sop_instance_uid)
    if study:
        query = query.where(Instance.study_instance_uid == study)
    if series:
        query = query.where(Instance.series_instance_uid == series)
    with state.factory() as session:
        return list(session.scalars(query).all())


def _retrieve(
    state: ServerState, rows: list[Instance], access: tuple[Principal, str, str, str]
) -> Response:
    """The instances as multipart/related; audited only when something is served."""
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such instances")
    audit_access(state, *access)
    parts = [state.store.path_for(r.sha256).read_bytes() for r in rows]
    body, content_type = write_related(parts, "application/dicom")
    return Response(body, media_type=content_type)


@router.get("/studies/{study}", summary="WADO-RS: retrieve a study", responses=AUTH | errors(404))
def retrieve_study(study: str, principal: Reader, state: StateDep) -> Response:
    """Every stored instance of a study."""
    return _retrieve(state, _instances(state, study), (principal, "wado-rs study", study, ""))


@router.get(
    "/studies/{study}/series/{series}",
    summary="WADO-RS: retrieve a series",
    responses=AUTH | errors(404),
)
def retrieve_series(study: str, series: str, principal: Reader, state: StateDep) -> Response:
    """Every instance of a series (e.g. a result SEG series)."""
    rows = _instances(state, study, series)
    return _retrieve(state, rows, (principal, "wado-rs series", study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}",
    summary="WADO-RS: an instance",
    responses=AUTH | errors(404),
)
def retrieve_instance(
    study: str, series: str, instance: str, principal: Reader, state: StateDep
) -> Response:
    """One instance."""
    rows = [r for r in _instances(state, study, series) if r.sop_instance_uid == instance]
    return _retrieve(state, rows, (principal, "wado-rs instance", study, instance))


@router.get(
    "/studies/{study}/series/{series}/metadata",
    summary="WADO-RS: series metadata",
    responses=AUTH | errors(404),
)
def series_metadata(
    study: str, series: str, request: Request, principal: Reader, state: StateDep
) -> Response:
    """The headers (no pixel data) of every instance in a series, as DICOM JSON."""
    rows = _instances(state, study, series)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such series")
    audit_access(state, principal, "wado-rs metadata", study, series)
    metadata = []
    base = f"{state.dicomweb_url}/studies/{study}/series/{series}/instances"
    for row in rows:
        ds = pydicom.dcmread(state.store.path_for(row.sha256), stop_before_pixels=True)
        metadata.append(metadata_json(ds, f"{base}/{row.sop_instance_uid}"))
    return Response(json.dumps(metadata), media_type=DICOM_JSON)
