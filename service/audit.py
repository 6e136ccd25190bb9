"""The audit trail: who touched which study's data, how and when, kept in the database.

Application logs carry no PHI; this table is where patient-data access is accounted for.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db.models import AuditEvent


def record(
    session: Session,
    actor: str,
    role: str,
    action: str,
    study_instance_uid: str | None = None,
    detail: str = "",
) -> AuditEvent:
    """Add one audit event to the session (the caller commits with its own work)."""
    event = AuditEvent(
        actor=actor[:128],
        role=role,
        action=action[:64],
        study_instance_uid=study_instance_uid,
        detail=detail,
    )
    session.add(event)
    return event
