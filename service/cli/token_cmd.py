"""``fedseg token create|revoke|list``: manage the API's bearer tokens."""

from __future__ import annotations

import argparse

from service.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``token`` subcommand."""
    parser = subparsers.add_parser("token", help="create, revoke or list API tokens")
    parser.add_argument("--state-dir", help="server state folder")
    parser.add_argument("--database-url", help="server database")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token (printed once)")
    create.add_argument("name", help="who uses it, e.g. pacs-main")
    create.add_argument("--role", required=True, choices=["sender", "reader", "admin"])
    revoke = actions.add_parser("revoke", help="revoke tokens by id or name")
    revoke.add_argument("id_or_name")
    actions.add_parser("list", help="list tokens (never their secrets)")
    parser.set_defaults(handler=run)


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
            for row in session.query(ApiToken).order_by(ApiToken.created_at):
                state = "revoked" if row.revoked_at else "active"
                print(f"{row.id}  {row.role:<7} {state:<8} {row.name}")
    return 0
