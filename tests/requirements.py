"""One rule for a test whose peer, tool or data is missing: skip locally, fail under CI.

CI (``CI=true``) must never pass by skipping, so every "not installed here" goes through
:func:`missing`. Usage: ``from tests.requirements import missing``.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    """True when the suite runs under CI (``CI`` is 1, true or yes)."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(message: str) -> NoReturn:
    """Skip the test with ``message``; under CI, fail it instead, since CI installs everything."""
    if under_ci():
        pytest.fail(message + " (CI must not skip: .ci/run installs it)")
    pytest.skip(message)
