"""Fixtures of the hardening tests: the in-process API (as in tests/service/api)."""

from __future__ import annotations

from tests.service.api.conftest import api, settings

__all__ = ["api", "settings"]
