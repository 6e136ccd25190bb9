"""Receiving one DICOM instance: validate, store by content, record, and mark its study active.

STOW-RS, the C-STORE SCP, job uploads and job results all end here, so every path applies the
same checks and the same idempotence: an instance re-sent with the same bytes changes nothing
but the study's last-received time; re-sent with different bytes into the same study for the
same patient, the newer version replaces it (audited and logged, the old file removed once the
replacement is committed). A SOP Instance UID already stored for another study, patient or a
fedseg result is refused, as are non-conformant UIDs, indexed values the database cannot hold,
and instances whose decoded pixels would exceed the configured limit.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import event, func, select
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session

from service import audit
from service.db.models import Instance, InstanceOrigin, Study, StudyState, utcnow
from service.library_logging import library_message
from service.storage.conformance import check_indexed_values, check_uids
from service.storage.decoded_size import (
    DEFAULT_MAX_DECODED_BYTES,
    check_decoded_size,
    check_inflated_size,
)
from service.storage.errors import InstanceRejectedError, InsufficientStorageError
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")

#: Attributes copied into the database for QIDO-RS (keyword -> DICOM JSON VR).
QIDO_ATTRIBUTES: dict[str, str] = {
    "StudyDate": "DA",
    "StudyTime": "TM",
    "AccessionNumber": "SH",
    "PatientName": "PN",
    "PatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyID": "SH",
    "StudyDescription": "LO",
    "ReferringPhysicianName": "PN",
    "SeriesDescription": "LO",
    "SeriesDate": "DA",
    "SeriesTime": "TM",
    "SeriesNumber": "IS",
    "BodyPartExamined": "CS",
    "InstanceNumber": "IS",
}


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one received instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    #: False when the identical instance was already stored.
    new: bool


def read_header(data: bytes) -> pydicom.Dataset:
    """Parse the header of a DICOM file (Part 10, or a raw dataset with explicit meta absent).

    Raises
    ------
    InstanceRejectedError
        If the bytes are not DICOM or lack the identifying UIDs.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        missing = [k for k in _REQUIRED if not str(ds.get(k, "") or "").strip()]
        # Values convert lazily (and are then cached): touch every one stored in the database
        # here, so a damaged value is a rejection now and not a server error later.
        indexed = qido_attributes(ds) | {"Modality": str(ds.get("Modality", "") or "")}
    except InvalidDicomError as exc:
        message = library_message(exc)
        raise InstanceRejectedError(f"not a readable DICOM instance: {message}") from exc
    except Exception as exc:  # pydicom raises many types for damaged headers
        message = library_message(exc)
        raise InstanceRejectedError(f"DICOM header could not be parsed: {message}") from exc
    if missing:
        raise InstanceRejectedError(f"instance lacks {', '.join(missing)}; cannot store it")
    check_uids(ds, _REQUIRED)
    check_indexed_values(indexed, QIDO_ATTRIBUTES | {"Modality": "CS"})
    return ds


def qido_attributes(ds: pydicom.Dataset) -> dict[str, Any]:
    """The QIDO attributes present in ``ds``, as plain strings keyed by keyword."""
    return {k: str(ds.get(k)) for k in QIDO_ATTRIBUTES if ds.get(k) not in (None, "")}


def ingest(
    session: Session,
    store: InstanceStore,
    data: bytes,
    source: str,
    origin: InstanceOrigin = InstanceOrigin.RECEIVED,
    min_free_bytes: int = 0,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
) -> IngestOutcome:
    """Store ``data`` and record it; the caller commits the session.

    Received data must leave ``min_free_bytes`` free on the store's disk; results of jobs
    already accepted are exempt, so a full disk stops intake but not work in progress. An
    instance whose pixels would take more than ``max_decoded_bytes`` once decoded (or whose
    deflated data set inflates beyond it) is refused. Every check runs before anything is
    written, and a refusal is logged with its reason (never a header value).

    Raises
    ------
    InstanceRejectedError
        If the bytes are not a storable DICOM instance, or its SOP Instance UID already
        belongs to another study, patient or kind of instance.
    InsufficientStorageError
        If storing received data would leave less than ``min_free_bytes`` free.
    """
    if origin is InstanceOrigin.RECEIVED:
        check_free_space(store, len(data), min_free_bytes)
    try:
        return _ingest(session, store, data, (source, origin), max_decoded_bytes)
    except InstanceRejectedError as exc:
        logger.warning("refused an instance from %s: %s", source, exc)
        raise


def _ingest(
    session: Session,
    store: InstanceStore,
    data: bytes,
    sender: tuple[str, InstanceOrigin],
    max_decoded_bytes: int,
) -> IngestOutcome:
    source, origin = sender
    check_inflated_size(data, max_decoded_bytes)
    ds = read_header(data)
    check_decoded_size(ds, max_decoded_bytes)
    uid, study_uid = str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)
    patient_id = str(ds.get("PatientID", "") or "")
    row = session.get(Instance, uid, with_for_update=True)
    if row is not None:
        check_same_instance(row, study_uid, patient_id, origin)
    check_same_patient(session, study_uid, uid, patient_id)
    digest = hashlib.sha256(data).hexdigest()
    replaced = row.sha256 if row is not None and row.sha256 != digest else None
    new = row is None or replaced is not None
    if row is None:
        row = Instance(sop_instance_uid=uid)
        session.add(row)
    if new:
        row.sop_class_uid = str(ds.SOPClassUID)
        row.study_instance_uid = study_uid
        row.series_instance_uid = str(ds.SeriesInstanceUID)
        row.modality = str(ds.get("Modality", "") or "")
        row.origin = origin.value
        row.sha256 = digest
        row.size = len(data)
        row.attributes = qido_attributes(ds)
        row.source = source[:64]
        row.received_at = utcnow()
        _flush(session)
    store.put(data)
    if replaced is not None:
        _record_replacement(session, row, replaced, source)
        remove_after_commit(session, store, replaced)
    if origin is InstanceOrigin.RECEIVED:
        touch_study(session, study_uid)
    return IngestOutcome(row.sop_class_uid, uid, study_uid, row.series_instance_uid, new=new)


def _flush(session: Session) -> None:
    """Write the row now, so a value the database refuses refuses this instance only."""
    try:
        session.flush()
    except DataError as exc:
        # The driver's message quotes the SQL parameters (header values): not repeated.
        raise InstanceRejectedError(
            f"the database refused a value of this instance ({type(exc.orig).__name__}); "
            "check the instance's header values"
        ) from None


def check_same_instance(
    row: Instance, study_uid: str, patient_id: str, origin: InstanceOrigin
) -> None:
    """Refuse a SOP Instance UID already stored for another study, patient or origin.

    A SOP Instance UID names one instance for ever: re-used for another study or patient
    (a forged or mis-generated UID) it would move the stored instance, or a fedseg result,
    out of its study. A re-send into the same study, for the same patient, may change it.

    Raises
    ------
    InstanceRejectedError
        If the stored instance of that UID differs in study, patient or origin.
    """
    uid = row.sop_instance_uid
    if row.study_instance_uid != study_uid:
        raise InstanceRejectedError(
            f"SOP Instance UID {uid} already belongs to another study; a SOP Instance UID "
            "names one instance only, so a new or changed instance needs a new UID"
        )
    if row.origin != origin.value:
        stored = (
            "a fedseg result"
            if row.origin == InstanceOrigin.RESULT.value
            else "a received instance"
        )
        raise InstanceRejectedError(
            f"SOP Instance UID {uid} already belongs to {stored}, which a {origin.value} "
            "instance cannot replace; the sender must use its own UIDs"
        )
    if str((row.attributes or {}).get("PatientID", "")) != patient_id:
        # Neither patient ID goes into the message or the log: they are PHI.
        raise InstanceRejectedError(
            f"SOP Instance UID {uid} is already stored for another patient; a re-sent "
            "instance cannot change its PatientID, check the sender's patient identity"
        )


def _record_replacement(session: Session, row: Instance, old_digest: str, source: str) -> None:
    detail = f"SOP Instance {row.sop_instance_uid}: {old_digest} replaced by {row.sha256}"
    role = "sender" if row.origin == InstanceOrigin.RECEIVED.value else "worker"
    audit.record(session, source, role, "instance replaced", row.study_instance_uid, detail)
    logger.info(
        "instance %s of study %s replaced by a changed re-send from %s (%s... -> %s...)",
        row.sop_instance_uid, row.study_instance_uid, source, old_digest[:12], row.sha256[:12],
    )  # fmt: skip


def remove_after_commit(session: Session, store: InstanceStore, digest: str) -> None:
    """Delete the file ``digest`` once the session commits, if no instance refers to it then.

    Before the commit the old row still names the file, and a rollback keeps it; so the file
    goes only after the commit, and only when a fresh query finds no reference.
    """
    engine = session.get_bind().engine

    def remove(_: Session) -> None:
        query = select(func.count()).select_from(Instance).where(Instance.sha256 == digest)
        try:
            with engine.connect() as connection:
                referenced = connection.scalar(query)
            if not referenced and store.delete(digest):
                logger.info("removed the replaced file %s...", digest[:12])
        except (OSError, SQLAlchemyError) as exc:
            # The new instance is committed; a leftover file is reclaimed by retention.
            logger.warning(
                "could not remove the replaced file %s...: %s", digest[:12], type(exc).__name__
            )

    event.listen(session, "after_commit", remove, once=True)


def check_free_space(store: InstanceStore, size: int, min_free_bytes: int) -> None:
    """Refuse ``size`` more bytes when they would leave less than ``min_free_bytes`` free.

    Raises
    ------
    InsufficientStorageError
        If the disk holding the store is too full.
    """
    free = shutil.disk_usage(store.root).free
    if free - size < min_free_bytes:
        logger.error("instance store full: %d bytes free, reserve %d", free, min_free_bytes)
        raise InsufficientStorageError(
            f"not enough disk space: {free} bytes free, {size} needed and {min_free_bytes} kept "
            "in reserve; free space in the state folder or lower FEDSEG_MIN_FREE_BYTES"
        )


def check_same_patient(session: Session, study_uid: str, sop_uid: str, patient_id: str) -> None:
    """Refuse an instance whose PatientID differs from the study's instances already stored.

    A study UID shared by two patients (a mis-merge or a forged UID) would otherwise be
    segmented as one volume and its results filed under the wrong patient.

    Raises
    ------
    InstanceRejectedError
        If the study already holds instances of another PatientID.
    """
    query = (
        select(Instance.attributes)
        .where(Instance.study_instance_uid == study_uid, Instance.sop_instance_uid != sop_uid)
        .limit(1)
    )
    rows = session.scalars(query).all()
    if not rows:
        return
    if str((rows[0] or {}).get("PatientID", "")) != patient_id:
        # Neither patient ID goes into the message or the log: they are PHI.
        raise InstanceRejectedError(
            f"study {study_uid} already holds instances of another PatientID; "
            "a study cannot mix patients, check the sender's study UIDs"
        )


def touch_study(session: Session, study_uid: str) -> None:
    """Restart the study's quiet period (instances are still arriving)."""
    study = session.get(Study, study_uid)
    if study is None:
        session.add(Study(study_instance_uid=study_uid, last_received_at=utcnow()))
        session.flush()
        return
    study.last_received_at = utcnow()
    study.state = StudyState.RECEIVING.value
