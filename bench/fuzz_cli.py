"""The fuzzers' shared command line: arguments, quiet logging, a JSON report, an exit status."""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from service.config import get_settings


class FuzzOutcome(Protocol):
    """What a fuzzer's run returns: a JSON-ready summary and whether any input failed."""

    def as_dict(self) -> dict[str, object]:
        """The report printed as JSON."""
        ...

    @property
    def failed(self) -> bool:
        """True when any input crashed the code under test (or got a server error)."""
        ...


def fuzz_main(
    argv: Sequence[str] | None,
    description: str,
    run: Callable[[Path, int, int], FuzzOutcome],
) -> int:
    """Parse ``--n/--seed/--data``, run the fuzzer, print its report; exit status 1 on failure."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=10_000, help="number of inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=get_settings().data)
    args = parser.parse_args(argv)
    # Damaged inputs make pydicom and the reader warn on every case; the counts are the output.
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    report = run(args.data, args.n, args.seed)
    print(json.dumps(report.as_dict(), indent=2))
    return 1 if report.failed else 0
