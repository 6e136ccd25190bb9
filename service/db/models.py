"""The server's tables (SQLAlchemy 2 declarative models).

One row per received or produced DICOM instance, per study being received, per job, per
result delivery, per API token and per audit event. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, UTC and timezone-aware."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Refuse naive datetimes."""
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use service.db.models.utcnow()")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Attach UTC to values SQLite returned without a zone."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of every fedseg table."""


class InstanceOrigin(StrEnum):
    """Where a stored instance came from."""

    RECEIVED = "received"
    RESULT = "result"


class Instance(Base):
    """A DICOM instance stored in the content-addressed store."""

    __tablename__ = "instances"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    origin: Mapped[str] = mapped_column(String(16), default=InstanceOrigin.RECEIVED.value)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    #: A few study/series attributes copied for QIDO-RS (DICOM JSON, keyed by tag).
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    source: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class StudyState(StrEnum):
    """Life cycle of a study that arrives instance by instance."""

    RECEIVING = "receiving"
    QUEUED = "queued"


class Study(Base):
    """A study that instances arrived for; complete after the quiet period."""

    __tablename__ = "studies"

    study_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING.value)
    last_received_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class JobState(StrEnum):
    """Life cycle of a segmentation job."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    """One segmentation of one study's instances; claimed by workers under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_created", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: Study UID plus a digest of the input instances: a re-sent study makes no new job.
    input_key: Mapped[str] = mapped_column(String(160), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Stage name -> fraction done (0..1).
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Stage name -> seconds.
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Result kind (a ``service.results.kinds.ResultKind`` value) -> list of stored references.
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DeliveryState(StrEnum):
    """Life cycle of sending one job's results to one destination."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(Base):
    """Sending a job's DICOM results to one configured destination."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ApiToken(Base):
    """A bearer token, stored as a SHA-256 of its secret part."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class AuditEvent(Base):
    """Who accessed which study's data, how and when (kept in the database, not the logs)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class RoutingRule(Base):
    """Which models run for series that match (empty criteria match everything)."""

    __tablename__ = "routing_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    modality: Mapped[str] = mapped_column(String(16), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    #: A regular expression searched in SeriesDescription (case-insensitive).
    series_description: Mapped[str] = mapped_column(String(256), default="")
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
