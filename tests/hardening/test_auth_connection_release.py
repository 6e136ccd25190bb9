"""Authentication gives its pooled database connection back at once.

Found by the 16-sender load test: each streamed STOW-RS request kept the connection its
token check used, sixteen requests held the whole pool, and their own inserts timed out (500).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from service.auth.tokens import Role, authenticate, create_token
from service.db.migrate import upgrade


def test_authenticate_releases_the_connection(tmp_path: Path) -> None:
    # One connection in the pool, no overflow: a held connection blocks everyone else.
    engine = create_engine(
        f"sqlite:///{tmp_path / 'db.sqlite'}", pool_size=1, max_overflow=0, pool_timeout=2
    )
    upgrade(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        token, _ = create_token(session, "pacs", Role.SENDER)
    with factory() as request_session:  # the request's session, open until the response
        principal = authenticate(request_session, token)
        assert principal is not None and principal.role is Role.SENDER
        assert not request_session.in_transaction()
        with engine.connect() as other:  # the STOW-RS insert: gets the pool's one connection
            assert other.execute(text("select 1")).scalar() == 1
        assert authenticate(request_session, token + "x") is None  # wrong secret: refused
    engine.dispose()
