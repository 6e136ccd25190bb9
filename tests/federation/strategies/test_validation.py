"""Update checks before aggregation."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from federation.strategies import UpdateCheck, check_updates
from federation.updates import SiteUpdate

REFERENCE = {"encoder.w": np.zeros((3, 3), np.float32), "heads.liver.b": np.zeros(2, np.float32)}


def _update(site: str, scale: float, **override: np.ndarray) -> SiteUpdate:
    rng = np.random.default_rng(sum(map(ord, site)))
    arrays = {
        k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in REFERENCE.items()
    }
    arrays.update(override)
    return SiteUpdate(site, arrays, 4, frozenset({"liver"}))


def test_nan_inf_and_shape_are_rejected_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad_nan = _update("nan-site", 1.0, **{"encoder.w": np.full((3, 3), np.nan, np.float32)})
    bad_inf = _update("inf-site", 1.0, **{"heads.liver.b": np.array([np.inf, 0], np.float32)})
    bad_shape = _update("shape-site", 1.0, **{"heads.liver.b": np.zeros(3, np.float32)})
    good = [_update("a", 1.0), _update("b", 1.2)]
    with caplog.at_level(logging.WARNING):
        accepted, rejected = check_updates([*good, bad_nan, bad_inf, bad_shape], REFERENCE)
    assert [u.site for u in accepted] == ["a", "b"]
    reasons = {r.site: r.reason for r in rejected}
    assert "NaN or Inf" in reasons["nan-site"] and "NaN or Inf" in reasons["inf-site"]
    assert "shape" in reasons["shape-site"]
    assert "nan-site" in caplog.text and "shape-site" in caplog.text


def test_norm_outlier_is_rejected_even_with_two_sites() -> None:
    accepted, rejected = check_updates([_update("a", 1.0), _update("big", 500.0)], REFERENCE)
    assert [u.site for u in accepted] == ["a"]
    assert [r.site for r in rejected] == ["big"] and "norm" in rejected[0].reason


def test_ordinary_spread_is_accepted() -> None:
    updates = [_update(s, f) for s, f in (("a", 1.0), ("b", 2.0), ("c", 0.5))]
    accepted, rejected = check_updates(updates, REFERENCE, UpdateCheck(norm_ratio=10))
    assert len(accepted) == 3 and not rejected


def test_missing_parameter_is_rejected() -> None:
    partial = SiteUpdate("p", {"encoder.w": np.zeros((3, 3), np.float32)}, 1)
    _, rejected = check_updates([partial], REFERENCE)
    assert "missing" in rejected[0].reason
