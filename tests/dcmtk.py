"""Locate dcmtk's command-line tools (Debian package ``dcmtk``).

pynetdicom installs Python apps of the same names (``storescu``, ``echoscu``, ``storescp``) into
the virtualenv, which comes first on PATH under ``make test``; the interop tests must run the
real dcmtk programs, so they are looked up in the system folders only.

Usage: ``from tests.dcmtk import dcmtk``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.requirements import missing

_SYSTEM_BIN = (Path("/usr/bin"), Path("/usr/local/bin"))


def dcmtk(tool: str) -> str:
    """Path of dcmtk's ``tool``; skips (fails under CI) when dcmtk is not installed."""
    for folder in _SYSTEM_BIN:
        exe = folder / tool
        if exe.is_file() and os.access(exe, os.X_OK):
            return str(exe)
    message = f"dcmtk {tool} not found in /usr/bin (Debian package dcmtk; .ci/run installs it)"
    missing(message)
