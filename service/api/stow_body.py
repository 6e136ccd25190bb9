"""Storing a STOW-RS body: every part ingested, each refusal reported with its reason.

Shared by the DICOMweb store route and the jobs upload route (``POST /v1/jobs`` with a
``multipart/related`` body), so neither router imports the other. A refused part becomes a
FailedSOPSequence item with FailureReason and the reason as text (ErrorComment), and
:func:`failure_warning` summarises the reasons in a PS3.18 ``Warning`` header (issue 19,
item 5); ingest logs each refusal. Reasons never quote header values.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
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
from service.storage.conformance import uid_problem
from service.storage.decoded_size import deflated_dataset_offset
from service.storage.errors import InstanceRejectedError
from service.storage.ingest import IngestOutcome, ingest

logger = logging.getLogger(__name__)

#: Distinct reasons named in a STOW-RS ``Warning`` header, and the length of each.
_MAX_WARNINGS = 5
_MAX_WARNING_CHARS = 400


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
    except Exception:  # a damaged part: its item carries the reason without UIDs
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
