"""Storing a STOW-RS body: every part ingested, each refusal reported as a failure item.

Shared by the DICOMweb store route and the jobs upload route (``POST /v1/jobs`` with a
``multipart/related`` body), so neither router imports the other.
"""

from __future__ import annotations

import io
from typing import Any

import pydicom
from fastapi import HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from service.api import dicom_json as dj
from service.api.state import ServerState
from service.dicomweb.multipart import (
    BodyTooLargeError,
    MalformedBodyError,
    NotMultipartError,
    read_parts,
    related_boundary,
)
from service.storage.errors import InstanceRejectedError, InsufficientStorageError
from service.storage.ingest import IngestOutcome, ingest


def _store_one(state: ServerState, data: bytes, source: str) -> IngestOutcome:
    with state.factory() as session, session.begin():
        return ingest(
            session, state.store, data, source, min_free_bytes=state.settings.min_free_bytes
        )


def _failure(part_ct: str, reason: int, data: bytes | None) -> dict[str, Any]:
    sop_class = sop_uid = ""
    if data:
        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            sop_class, sop_uid = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
        except Exception:
            pass
    return dj.reference(sop_class, sop_uid, reason=dj.element("FailureReason", "US", reason))


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
    """Store every part of a STOW-RS body; returns the stored outcomes and failure items."""
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
                failed.append(_failure(part.content_type, dj.FAILURE_CANNOT_UNDERSTAND, None))
                continue
            try:
                stored.append(await run_in_threadpool(_store_one, state, data, source))
                state.metrics.instances.labels("stow", "stored").inc()
            except InstanceRejectedError:
                failed.append(_failure(part.content_type, dj.FAILURE_CANNOT_UNDERSTAND, data))
                state.metrics.instances.labels("stow", "rejected").inc()
    except BodyTooLargeError as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from exc
    except InsufficientStorageError as exc:
        # Parts stored before the disk filled stay stored; the sender retries later.
        raise HTTPException(status.HTTP_507_INSUFFICIENT_STORAGE, str(exc)) from exc
    except MalformedBodyError as exc:
        # Parts before the damage are stored (idempotently): resending the whole body is safe.
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f"{exc}; {len(stored)} instances before it were stored, resend the whole body",
        ) from exc
    return stored, failed
