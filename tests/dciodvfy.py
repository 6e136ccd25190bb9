"""Run Debian's ``dciodvfy`` (dicom3tools) on a written file; shared by every writer test.

Usage in tests: ``from tests.dciodvfy import assert_valid`` (the repository root is on
``sys.path`` under pytest).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.requirements import missing


def dciodvfy_errors(path: Path) -> list[str]:
    """The lines ``dciodvfy`` reports as errors for ``path`` (it writes to stderr)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        message = "dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it"
        missing(message)
    result = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if "Error" in line]


def assert_valid(path: Path) -> None:
    """Fail with every error line when ``dciodvfy`` finds errors in ``path``."""
    errors = dciodvfy_errors(path)
    assert not errors, f"dciodvfy {path}:\n" + "\n".join(errors)
