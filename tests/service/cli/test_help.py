"""Every option of every ``fedseg`` subcommand says what it does (#19 item 4)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from service.cli.main import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "fedseg"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        text = action.help or ""
        if not text.strip() or text == argparse.SUPPRESS:
            out.append(f"{name}: no help")
        elif action.choices is not None and not isinstance(action.choices, range):
            shown = "%(choices)s" in text or all(str(c) in text for c in action.choices)
            if not shown and action.metavar is not None:
                out.append(f"{name}: choices hidden by metavar {action.metavar!r}")
    return out


def test_every_option_has_help() -> None:
    problems = [
        f"{path} {problem}"
        for path, parser in _parsers(build_parser())
        if "unavailable" not in (parser.description or "")
        for problem in _undocumented(parser)
    ]
    assert not problems, "options without help:\n" + "\n".join(problems)


def test_every_subcommand_has_help() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {a.dest for a in action._choices_actions if a.help}
                missing += [f"{path} {name}" for name in action.choices if name not in helped]
    assert not missing, "subcommands without help: " + ", ".join(missing)
