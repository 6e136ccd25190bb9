"""``fedseg token create|list|revoke`` against a temporary state folder."""

from __future__ import annotations

from pathlib import Path

from service.auth.tokens import Role, authenticate
from service.db.engine import make_engine, session_factory
from tests.service.cli.server_process import fedseg, fedseg_env


def test_create_list_revoke(tmp_path: Path) -> None:
    env = fedseg_env(tmp_path)
    token = fedseg(["token", "create", "planner", "--role", "reader"], env).stdout.strip()
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'fedseg.db'}")
    with session_factory(engine)() as session:
        principal = authenticate(session, token)
        assert principal is not None
        assert (principal.name, principal.role) == ("planner", Role.READER)
    listed = fedseg(["token", "list"], env).stdout
    assert "planner" in listed and "active" in listed and token not in listed
    assert fedseg(["token", "revoke", "planner"], env).stdout.strip() == "revoked 1 token(s)"
    with session_factory(engine)() as session:
        assert authenticate(session, token) is None
    engine.dispose()
