"""``fedseg token create|revoke|list``: manage the API's bearer tokens."""

from __future__ import annotations

import argparse

from service.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``token`` subcommand."""
    parser = subparsers.add_parser("token", help="create, revoke or list API tokens")
    _add_state_options(parser, None)
    # The same options after the action (`token create NAME --state-dir X`); SUPPRESS keeps
    # an action's parser from overwriting a value given before the action.
    where = argparse.ArgumentParser(add_help=False)
    _add_state_options(where, argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token (printed once)", parents=[where])
    create.add_argument("name", help="who uses it, e.g. pacs-main")
    create.add_argument(
        "--role",
        required=True,
        choices=["sender", "reader", "admin"],
        help="sender: a PACS or modality (store studies, create jobs); reader: a planner or "
        "viewer (studies, jobs, results); admin: everything, plus models, routing and audit",
    )
    revoke = actions.add_parser("revoke", help="revoke tokens by id or name", parents=[where])
    revoke.add_argument("id_or_name", help="a token id (from `token list`) or a name")
    actions.add_parser("list", help="list tokens (never their secrets)", parents=[where])
    parser.set_defaults(handler=run)


def _add_state_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--state-dir", default=default, help="server state folder (default: FEDSEG_STATE_DIR)"
    )
    parser.add_argument(
        "--database-url", default=default, help="server database (default: FEDSEG_DATABASE_URL)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the token action; prints the new token on stdout."""
    from service.auth.tokens import Role, create_token, revoke_token
    from service.db.engine import make_engine, session_factory
    from service.db.migrate import upgrade
    from service.db.models import ApiToken

    settings = get_settings(state_dir=args.state_dir, database_url=args.database_url)
    engine = make_engine(settings.resolved_database_url())
    upgrade(engine)
    with session_factory(engine)() as session, session.begin():
        if args.action == "create":
            token, _ = create_token(session, args.name, Role(args.role))
            print(token)
        elif args.action == "revoke":
            count = revoke_token(session, args.id_or_name)
            print(f"revoked {count} token(s)")
            return 0 if count else 1
        else:
            rows = session.query(ApiToken).order_by(ApiToken.created_at).all()
            width = max([len("ID"), *(len(r.id) for r in rows)])
            print(f"{'ID':<{width}}  {'ROLE':<7} {'STATE':<8} {'CREATED (UTC)':<16}  NAME")
            for row in rows:
                state = "revoked" if row.revoked_at else "active"
                created = row.created_at.strftime("%Y-%m-%d %H:%M")
                print(f"{row.id:<{width}}  {row.role:<7} {state:<8} {created:<16}  {row.name}")
    return 0
