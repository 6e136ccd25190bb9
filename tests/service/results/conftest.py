"""Fixtures for the writer tests: synthetic source series, written once per session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.dicom.volume import Volume
from tests.result_series import write_phantom_series


@pytest.fixture(scope="session")
def make_series(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Volume]:
    """Return ``make(modality, geometry) -> Volume`` of a written and re-read phantom series."""
    cache: dict[tuple[str, str], Volume] = {}

    def make(modality: str, geometry: str) -> Volume:
        if (modality, geometry) not in cache:
            out = tmp_path_factory.mktemp(f"{modality}-{geometry}")
            cache[(modality, geometry)] = write_phantom_series(out, modality, geometry)
        return cache[(modality, geometry)]

    return make
