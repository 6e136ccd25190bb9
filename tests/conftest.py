"""Shared fixtures: the real DICOM under FEDSEG_DATA (default ../shared/data).

Data-dependent tests skip with a clear reason when the folder is absent, except under CI
(``CI=true``), where a missing folder fails them: CI must never pass by skipping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import get_settings
from tests.requirements import missing


def _data_root() -> Path:
    return get_settings().data


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root of the shared real data; skips (or fails under CI) when it is missing."""
    root = _data_root()
    if not (root / "README.md").is_file():
        message = (
            f"real test data not found at {root}; set FEDSEG_DATA to the folder that holds "
            "the shared data's README.md"
        )
        missing(message)
    return root


@pytest.fixture(scope="session")
def data_dir(data_root: Path):  # type: ignore[no-untyped-def]
    """Return a function giving a sub-folder of the data root, failing clearly if absent."""

    def get(relative: str) -> Path:
        path = data_root / relative
        if not path.exists():
            pytest.fail(f"{path} missing from the shared data; see its README.md")
        return path

    return get
