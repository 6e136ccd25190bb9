"""DICOMweb: STOW-RS store and WADO-RS retrieval under ``/dicomweb`` (QIDO-RS: ``qido.py``)."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from typing import Any

import pydicom
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from service.api import dicom_json as dj
from service.api.deps import Reader, Sender, StateDep, audit_access
from service.api.multipart import (
    BodyTooLargeError,
    MalformedBodyError,
    NotMultipartError,
    read_parts,
    related_boundary,
    write_related,
)
from service.api.responses import AUTH, errors
from service.api.routers.wado_frames import metadata_json
from service.api.state import ServerState
from service.auth.tokens import Principal
from service.db.models import Instance
from service.storage.conformance import uid_problem
from service.storage.decoded_size import deflated_dataset_offset
from service.storage.errors import InstanceRejectedError
from service.storage.ingest import IngestOutcome, ingest

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

#: Distinct reasons named in a STOW-RS ``Warning`` header, and the length of each.
_MAX_WARNINGS = 5
_MAX_WARNING_CHARS = 400

DICOM_JSON = "application/dicom+json"


def _store_one(state: ServerState, data: bytes, source: str) -> IngestOutcome:
    settings = state.settings
    with state.factory() as session, session.begin():
        return ingest(
            session,
            state.store,
            data,
            source,
            min_free_bytes=settings.min_free_bytes,
            max_decoded_bytes=settings.max_decoded_instance_bytes,
        )


def _identity(data: bytes | None) -> tuple[str, str]:
    """The SOP Class and Instance UIDs of a refused part, each only when it is a valid UID."""
    if not data or deflated_dataset_offset(data) is not None:
        return "", ""  # a deflated data set is not inflated again to name it
    try:
        ds = pydicom.dcmread(
            io.BytesIO(data),
            stop_before_pixels=True,
            force=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
        found = (ds.get("SOPClassUID", ""), ds.get("SOPInstanceUID", ""))
    except Exception:  # the part was refused because it is damaged: name it by number only
        return "", ""
    sop_class, sop_uid = (str(v) if uid_problem(v) is None else "" for v in found)
    return sop_class, sop_uid


def _failure(reason: int, text: str, data: bytes | None) -> dict[str, Any]:
    """A FailedSOPSequence item: the UIDs, FailureReason and the reason as ErrorComment."""
    sop_class, sop_uid = _identity(data)
    return dj.reference(
        sop_class,
        sop_uid,
        reason=dj.element("FailureReason", "US", reason),
        comment=dj.element("ErrorComment", "LO", text),
    )


def _content_length_ok(request: Request, limit: int) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            f"body of {length} bytes exceeds the upload limit of {limit} bytes",
        )


async def store_body(
    request: Request, state: ServerState, source: str
) -> tuple[list[IngestOutcome], list[dict[str, Any]]]:
    """Store every part of a STOW-RS body; returns the stored outcomes and failure items.

    A refused part is listed with its reason (FailureReason and an ErrorComment text); the
    other parts are stored. Errors of the whole request (413, 415, 400, a full disk's 507)
    propagate; parts stored before them stay stored, and a resend is idempotent.
    """
    limit = state.settings.max_upload_bytes
    _content_length_ok(request, limit)
    try:
        boundary, _ = related_boundary(request.headers.get("content-type", ""))
    except NotMultipartError as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
    stored: list[IngestOutcome] = []
    failed: list[dict[str, Any]] = []
    try:
        async for part in read_parts(request.stream(), boundary, limit):
            data = bytes(part.content)
            if part.content_type not in ("application/dicom", ""):
                text = "the part is not application/dicom; only DICOM instances are stored"
                logger.warning(
                    "STOW-RS from %s: part %d refused: %s",
                    source,
                    len(stored) + len(failed) + 1,
                    text,
                )
                failed.append(_failure(dj.FAILURE_CANNOT_UNDERSTAND, text, None))
                continue
            try:
                stored.append(await run_in_threadpool(_store_one, state, data, source))
                state.metrics.instances.labels("stow", "stored").inc()
            except InstanceRejectedError as exc:  # ingest logged the reason
                failed.append(_failure(dj.FAILURE_CANNOT_UNDERSTAND, str(exc), data))
                state.metrics.instances.labels("stow", "rejected").inc()
    except BodyTooLargeError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except MalformedBodyError as exc:
        # Parts before the damage are stored (idempotently): resending the whole body is safe.
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{exc}; {len(stored)} instances before it were stored, resend the whole body",
        ) from exc
    if failed:
        logger.warning("STOW-RS from %s: %d stored, %d refused", source, len(stored), len(failed))
    return stored, failed


def failure_warning(failed: list[dict[str, Any]], total: int) -> dict[str, str]:
    """The PS3.18 ``Warning`` header of a STOW-RS answer with refused instances (or none).

    One ``299`` warning per distinct reason, at most :data:`_MAX_WARNINGS`, with how many
    instances it refused; the full text of each is in its FailedSOPSequence item.
    """
    if not failed:
        return {}
    comment = dj.tag("ErrorComment")
    reasons = Counter(str((item.get(comment, {}).get("Value") or [""])[0]) for item in failed)
    texts = [f"{len(failed)} of {total} instances refused"]
    for text, count in reasons.most_common(_MAX_WARNINGS):
        texts.append(f"{count} x {text}" if count > 1 else text)
    if len(reasons) > _MAX_WARNINGS:
        texts.append(f"and {len(reasons) - _MAX_WARNINGS} more reasons, see FailedSOPSequence")
    return {"Warning": ", ".join(f'299 fedseg: "{_quotable(t)}"' for t in texts)}


def _quotable(text: str) -> str:
    """``text`` fit for an HTTP quoted-string: printable ASCII, no quote or backslash."""
    clean = text.replace("\\", "/").replace('"', "'")
    return "".join(c if " " <= c <= "~" else "?" for c in clean)[:_MAX_WARNING_CHARS]


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


@router.post(
    "/studies",
    summary="STOW-RS: store instances",
    responses=AUTH | errors(202, 400, 409, 413, 415, 507),
)
async def stow(request: Request, principal: Sender, state: StateDep) -> Response:
    """Store the instances of a multipart/related body; every part is acknowledged."""
    stored, failed = await store_body(request, state, f"stow:{principal.name}")
    base = _base_url(request)
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
    base = f"{_base_url(request)}/studies/{study}/series/{series}/instances"
    for row in rows:
        ds = pydicom.dcmread(state.store.path_for(row.sha256), stop_before_pixels=True)
        metadata.append(metadata_json(ds, f"{base}/{row.sop_instance_uid}"))
    return Response(json.dumps(metadata), media_type=DICOM_JSON)
