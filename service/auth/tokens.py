"""Bearer tokens with roles, stored hashed.

A token reads ``fs_<id>_<secret>``. The database keeps the id and the SHA-256 of the secret
only; a presented token is looked up by its id and its secret compared with
:func:`hmac.compare_digest`, so neither a database dump nor response timing reveals a token.
The secret carries 256 random bits, which is why a plain (unsalted, fast) hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import ApiToken, utcnow
from service.errors import ConfigurationError

_PREFIX = "fs"


class Role(StrEnum):
    """What a token may do."""

    #: A PACS or modality: stores studies and creates jobs.
    SENDER = "sender"
    #: A planner or viewer: reads studies, jobs and results.
    READER = "reader"
    #: Everything, including model uploads, routing rules and the audit log.
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    token_id: str
    name: str
    role: Role


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, name: str, role: Role) -> tuple[str, ApiToken]:
    """Create a token; returns the plaintext (shown once) and the stored row.

    Raises
    ------
    ConfigurationError
        If ``name`` is empty.
    """
    if not name.strip():
        raise ConfigurationError("a token needs a name saying who uses it (e.g. 'pacs-main')")
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiToken(id=token_id, name=name, role=Role(role).value, secret_sha256=_digest(secret))
    session.add(row)
    session.flush()
    return f"{_PREFIX}_{token_id}_{secret}", row


def revoke_token(session: Session, token_id_or_name: str) -> int:
    """Revoke the tokens with this id or name; returns how many were revoked."""
    rows = session.scalars(
        select(ApiToken).where(
            (ApiToken.id == token_id_or_name) | (ApiToken.name == token_id_or_name),
            ApiToken.revoked_at.is_(None),
        )
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


def authenticate(session: Session, presented: str) -> Principal | None:
    """The principal of a valid, unrevoked token, or None."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX:
        return None
    row = session.get(ApiToken, parts[1])
    # Compare even when the id is unknown, so a miss costs the same as a wrong secret.
    expected = row.secret_sha256 if row is not None else _digest(secrets.token_hex(16))
    matches = hmac.compare_digest(expected.encode(), _digest(parts[2]).encode())
    principal = (
        None
        if row is None or not matches or row.revoked_at is not None
        else Principal(token_id=row.id, name=row.name, role=Role(row.role))
    )
    _release(session)
    return principal


def _release(session: Session) -> None:
    # The request's session would otherwise keep its pooled connection for the whole request:
    # sixteen streamed STOW-RS bodies then held every connection and their own inserts timed
    # out (500). Ending the read-only transaction returns the connection; nothing is pending.
    if not (session.new or session.dirty or session.deleted) and session.in_transaction():
        session.rollback()
