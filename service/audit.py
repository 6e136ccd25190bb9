"""The audit trail: who touched which study's data, how and when, kept in the database.

Application logs carry no PHI; this table is where patient-data access is accounted for.
"""

from __future__ import annotations

import logging

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


class QueryRedactingFilter(logging.Filter):
    """Drops query strings from uvicorn access-log lines.

    QIDO-RS searches put patient identifiers in the query (``?PatientID=...``) and uvicorn's
    access log writes the full path; the path without its query is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's path argument (uvicorn passes it as the third argument)."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install :class:`QueryRedactingFilter` on the access logger (once)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, QueryRedactingFilter) for f in target.filters):
        target.addFilter(QueryRedactingFilter())
