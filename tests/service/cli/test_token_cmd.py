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


def test_state_options_after_the_action_and_a_listed_header(tmp_path: Path) -> None:
    env = fedseg_env(tmp_path / "elsewhere")  # the --state-dir given after the action wins
    state = tmp_path / "state-x"
    token = fedseg(["token", "create", "viewer", "--role", "reader", "--state-dir", str(state)],
                   env).stdout.strip()  # fmt: skip
    engine = make_engine(f"sqlite:///{state / 'fedseg.db'}")
    with session_factory(engine)() as session:
        assert authenticate(session, token) is not None
    engine.dispose()
    lines = fedseg(["token", "list", "--state-dir", str(state)], env).stdout.splitlines()
    assert lines[0].split() == ["ID", "ROLE", "STATE", "CREATED", "(UTC)", "NAME"]
    assert lines[1].split()[1:3] == ["reader", "active"] and lines[1].endswith("viewer")
    # Before the action, as before.
    listed = fedseg(["token", "--state-dir", str(state), "list"], env).stdout
    assert "viewer" in listed
