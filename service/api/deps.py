"""Dependencies of the routes: server state, database session, bearer-token roles, audit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from service import audit
from service.api.state import ServerState
from service.auth.tokens import Principal, Role, authenticate


def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState`."""
    state: ServerState = request.app.state.server
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A database session for one request."""
    with state.factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


class RequireRole:
    """A dependency admitting bearer tokens of the given roles (admin is always admitted)."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset({Role.ADMIN, *roles})

    def __call__(self, request: Request, session: SessionDep) -> Principal:
        """Authenticate the request; 401 without a valid token, 403 for another role."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        principal = authenticate(session, token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid bearer token is required (fedseg token create)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this route needs one of the roles: {allowed}"
            )
        request.state.principal = principal
        return principal


ANY_ROLE = RequireRole(Role.SENDER, Role.READER)
SENDER = RequireRole(Role.SENDER)
READER = RequireRole(Role.READER)
ADMIN = RequireRole()

AnyRole = Annotated[Principal, Depends(ANY_ROLE)]
Sender = Annotated[Principal, Depends(SENDER)]
Reader = Annotated[Principal, Depends(READER)]
Admin = Annotated[Principal, Depends(ADMIN)]


def audit_access(
    state: ServerState,
    principal: Principal,
    action: str,
    study_uid: str | None = None,
    detail: str = "",
) -> None:
    """Record an access to patient data (its own transaction, so a failed request counts)."""
    with state.factory() as session, session.begin():
        audit.record(session, principal.name, principal.role.value, action, study_uid, detail)
