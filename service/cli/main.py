"""Entry point of the ``fedseg`` command.

Subcommands are registered through the ``fedseg.commands`` entry-point group: each entry is a
``register(subparsers)`` function. The service layer registers its own; ``training`` and
``federation`` add theirs without ``service`` importing them. A layer whose extra is not
installed (no torch, say) shows its commands as unavailable instead of breaking the others.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from service.errors import FedsegError
from service.library_logging import OncePerMessage, route_library_warnings

logger = logging.getLogger("fedseg")

Handler = Callable[[argparse.Namespace], int]


def _unavailable(name: str, reason: str) -> Callable[[argparse._SubParsersAction], None]:
    def register(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(name, help=f"(unavailable: {reason})", add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)

        def refuse(_: argparse.Namespace) -> int:
            raise FedsegError(
                f"'fedseg {name}' is unavailable: {reason}. Install the extra that provides it, "
                "e.g. pip install 'fedseg[train]' (see README)."
            )

        parser.set_defaults(handler=refuse)

    return register


def build_parser() -> argparse.ArgumentParser:
    """Build the parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="fedseg",
        description="Federated segmentation: DICOM in, DICOM-SEG / RTSTRUCT / SR out.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in sorted(entry_points(group="fedseg.commands"), key=lambda e: e.name):
        try:
            register = entry.load()
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            register = _unavailable(entry.name, f"needs {missing}")
        register(subparsers)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 0 else logging.WARNING
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    route_library_warnings()
    for handler in logging.getLogger().handlers:
        handler.addFilter(OncePerMessage())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fedseg``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except FedsegError as exc:
        # The one place where fedseg errors become exit codes; the message names the input.
        print(f"fedseg {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
