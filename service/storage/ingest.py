"""Receiving one DICOM instance: validate, store by content, record, and mark its study active.

STOW-RS, the C-STORE SCP and job uploads all end here, so every path applies the same checks
and the same idempotence: an instance re-sent with the same bytes changes nothing but the
study's last-received time; re-sent with different bytes, the newer version replaces it.
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Instance, InstanceOrigin, Study, StudyState, utcnow
from service.library_logging import library_message
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
        qido_attributes(ds)
        str(ds.get("Modality", "") or "")
    except InvalidDicomError as exc:
        message = library_message(exc)
        raise InstanceRejectedError(f"not a readable DICOM instance: {message}") from exc
    except Exception as exc:  # pydicom raises many types for damaged headers
        message = library_message(exc)
        raise InstanceRejectedError(f"DICOM header could not be parsed: {message}") from exc
    if missing:
        raise InstanceRejectedError(f"instance lacks {', '.join(missing)}; cannot store it")
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
) -> IngestOutcome:
    """Store ``data`` and record it; the caller commits the session.

    Received data must leave ``min_free_bytes`` free on the store's disk; results of jobs
    already accepted are exempt, so a full disk stops intake but not work in progress.

    Raises
    ------
    InstanceRejectedError
        If the bytes are not a storable DICOM instance.
    InsufficientStorageError
        If storing received data would leave less than ``min_free_bytes`` free.
    """
    if origin is InstanceOrigin.RECEIVED:
        check_free_space(store, len(data), min_free_bytes)
    ds = read_header(data)
    uid = str(ds.SOPInstanceUID)
    study_uid = str(ds.StudyInstanceUID)
    check_same_patient(session, study_uid, uid, str(ds.get("PatientID", "") or ""))
    stored = store.put(data)
    row = session.get(Instance, uid)
    new = row is None or row.sha256 != stored.sha256
    if row is None:
        row = Instance(sop_instance_uid=uid)
        session.add(row)
    if new:
        row.sop_class_uid = str(ds.SOPClassUID)
        row.study_instance_uid = study_uid
        row.series_instance_uid = str(ds.SeriesInstanceUID)
        row.modality = str(ds.get("Modality", "") or "")
        row.origin = origin.value
        row.sha256 = stored.sha256
        row.size = stored.size
        row.attributes = qido_attributes(ds)
        row.source = source[:64]
        row.received_at = utcnow()
    if origin is InstanceOrigin.RECEIVED:
        touch_study(session, study_uid)
    return IngestOutcome(row.sop_class_uid, uid, study_uid, row.series_instance_uid, new=new)


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
