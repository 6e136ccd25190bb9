"""A job's own files and images: what the results, viewer and dashboard routes may read for it.

Everything served for a job is found from the job itself: result files from its ``results``
entries, inside its own results folder; the images under a SEG from the job's study, the SEG's
referenced series and instances, and the one patient they belong to. A UID alone is never
enough: another study may reuse a series UID, and must not reach this job's pages.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api.slice_stack import SegSource
from service.db.models import Instance, InstanceOrigin, Job
from service.errors import ConflictError, NotFoundError


def find_job(session: Session, job_id: str) -> Job:
    """The job ``job_id``.

    Raises
    ------
    NotFoundError
        If there is no such job.
    """
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def result_file(results_root: Path, job: Job, kind: str, index: int) -> Path:
    """The ``index``-th result file of ``kind``, checked to lie in the job's results folder.

    Raises
    ------
    NotFoundError
        If the job has no such result, or its file is gone or lies elsewhere.
    """
    entries = job.results.get(kind, [])
    if not 0 <= index < len(entries):
        known = ", ".join(sorted(job.results)) or "none yet"
        raise NotFoundError(f"job {job.id} has no {kind} result {index} ({known})")
    folder = (results_root / job.id).resolve()
    path = (results_root / str(entries[index].get("path", ""))).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise NotFoundError(f"the {kind} result file of job {job.id} is gone")
    return path


def seg_images(session: Session, job: Job, source: SegSource) -> list[Instance]:
    """The received instances a job's SEG was made on, from the job's own study.

    Raises
    ------
    ConflictError
        If the SEG names another study, or the instances found belong to another patient.
    NotFoundError
        If any referenced instance is no longer stored in the job's study and series.
    """
    if source.study_instance_uid != job.study_instance_uid:
        raise ConflictError(f"a SEG of job {job.id} names another study; it is not shown")
    rows = session.scalars(
        select(Instance).where(
            Instance.study_instance_uid == job.study_instance_uid,
            Instance.series_instance_uid == source.series_instance_uid,
            Instance.origin == InstanceOrigin.RECEIVED.value,
        )
    ).all()
    found = [row for row in rows if row.sop_instance_uid in source.sop_instance_uids]
    if len(found) != len(source.sop_instance_uids):
        raise NotFoundError(
            f"{len(source.sop_instance_uids) - len(found)} of the "
            f"{len(source.sop_instance_uids)} images job {job.id} was segmented on are no longer "
            f"stored in study {job.study_instance_uid}"
        )
    patients = {str((row.attributes or {}).get("PatientID", "")) for row in found}
    if patients != {source.patient_id}:
        # Neither ID is named: they are PHI.
        raise ConflictError(
            f"the images of job {job.id} no longer belong to the patient its SEG was made for"
        )
    return sorted(found, key=lambda row: row.sop_instance_uid)
