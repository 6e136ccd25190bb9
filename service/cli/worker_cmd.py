"""``fedseg worker``: an extra job worker (CPU or GPU) on the shared database."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from service.config import get_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``worker`` subcommand."""
    parser = subparsers.add_parser(
        "worker",
        help="run a segmentation worker against the server's database",
        description="Claim and run jobs from the shared queue until interrupted.",
    )
    parser.add_argument("--state-dir", help="shared storage folder (same as the server's)")
    parser.add_argument("--database-url", help="shared database (PostgreSQL for several hosts)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Work until SIGINT/SIGTERM."""
    from service.db.migrate import upgrade
    from service.jobs.routing import rule_source
    from service.jobs.runner import isolated_segment_runner
    from service.jobs.worker import work_forever
    from service.server import Server, idle_step, worker_context

    settings = get_settings(state_dir=args.state_dir, database_url=args.database_url)
    server = Server.from_settings(settings)
    upgrade(server.engine)
    stop = threading.Event()

    def halt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, halt)
    signal.signal(signal.SIGINT, halt)
    runner = isolated_segment_runner(settings, rules=rule_source(server.factory))
    runner.start_fork_server()
    ctx = worker_context(server, runner)
    work_forever(ctx, stop, settings.worker_poll_s, idle_step(server))
    return 0
