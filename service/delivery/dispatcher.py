"""Delivery of finished jobs' DICOM results: one row per (job, destination), retried.

A failed attempt is retried after ``retry_s`` doubled each time, up to ``max_attempts``; the
row's state, attempts and last error are what ``GET /v1/jobs/{id}`` and the dashboard show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.config import Destination, DestinationKind
from service.db.models import Delivery, DeliveryState, Instance, InstanceOrigin, Job, utcnow
from service.dicomweb.stow_client import StowClient, StowError
from service.dimse.scu import DeliveryError, send_files
from service.storage.store import InstanceStore

logger = logging.getLogger(__name__)

Sender = Callable[[Destination, Sequence[Path]], None]


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retries of a delivery."""

    max_attempts: int = 5
    retry_s: float = 10.0
    calling_ae: str = "FEDSEG"


def schedule(
    factory: sessionmaker[Session], job_id: str, destinations: Sequence[Destination]
) -> None:
    """Create the pending deliveries of a finished job (once per destination)."""
    with factory() as session, session.begin():
        existing = set(
            session.scalars(select(Delivery.destination).where(Delivery.job_id == job_id))
        )
        for destination in destinations:
            if destination.name not in existing:
                session.add(Delivery(job_id=job_id, destination=destination.name))


def send(destination: Destination, paths: Sequence[Path], calling_ae: str = "FEDSEG") -> None:
    """Send files to one destination by its kind.

    Raises
    ------
    DeliveryError
        If the destination did not accept every file.
    """
    if destination.kind is DestinationKind.DIMSE:
        send_files(paths, destination.host, destination.port, destination.ae_title, calling_ae)
        return
    try:
        StowClient(destination.url, destination.bearer_token).store(paths)
    except StowError as exc:
        raise DeliveryError(str(exc)) from exc


def _result_files(session: Session, store: InstanceStore, job: Job) -> list[Path]:
    """The job's own result instances: its SOP UIDs, in its study, stored as results."""
    uids = {
        entry["sop_instance_uid"]
        for entries in job.results.values()
        for entry in entries
        if "sop_instance_uid" in entry
    }
    rows = session.scalars(
        select(Instance).where(
            Instance.sop_instance_uid.in_(uids),
            Instance.study_instance_uid == job.study_instance_uid,
            Instance.origin == InstanceOrigin.RESULT.value,
        )
    ).all()
    if len(rows) != len(uids):
        # A UID alone is not enough: never send what is now another study's instance.
        raise DeliveryError(
            f"{len(uids) - len(rows)} of the {len(uids)} result instances of job {job.id} are no "
            f"longer stored as results of study {job.study_instance_uid}; nothing was sent"
        )
    return [store.path_for(r.sha256) for r in rows]


def deliver_due(
    factory: sessionmaker[Session],
    store: InstanceStore,
    destinations: Sequence[Destination],
    policy: DeliveryPolicy,
    sender: Sender | None = None,
) -> int:
    """Attempt every pending delivery that is due; returns how many were attempted."""
    by_name = {d.name: d for d in destinations}
    with factory() as session:
        due = session.scalars(
            select(Delivery).where(
                Delivery.state == DeliveryState.PENDING.value, Delivery.next_attempt_at <= utcnow()
            )
        ).all()
    for delivery in due:
        _attempt(factory, store, by_name, policy, delivery.id, sender)
    return len(due)


def _attempt(
    factory: sessionmaker[Session],
    store: InstanceStore,
    by_name: dict[str, Destination],
    policy: DeliveryPolicy,
    delivery_id: int,
    sender: Sender | None,
) -> None:
    with factory() as session, session.begin():
        row = session.get(Delivery, delivery_id)
        job = session.get(Job, row.job_id) if row is not None else None
        if row is None or job is None or row.state != DeliveryState.PENDING.value:
            return
        row.attempts += 1
        destination = by_name.get(row.destination)
        try:
            if destination is None:
                raise DeliveryError(f"destination {row.destination!r} is no longer configured")
            paths = _result_files(session, store, job)
            if sender is not None:
                sender(destination, paths)
            else:
                send(destination, paths, policy.calling_ae)
        except DeliveryError as exc:
            row.last_error = str(exc)
            if row.attempts >= policy.max_attempts:
                row.state = DeliveryState.FAILED.value
            else:
                delay = policy.retry_s * 2 ** (row.attempts - 1)
                row.next_attempt_at = utcnow() + timedelta(seconds=delay)
            logger.warning("delivery %d to %s failed: %s", row.id, row.destination, exc)
            return
        row.state = DeliveryState.DELIVERED.value
        row.delivered_at = utcnow()
        row.last_error = None
