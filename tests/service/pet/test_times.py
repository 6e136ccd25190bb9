"""DICOM DA/TM/DT parsing and decay arithmetic used by the SUV conversion."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from service.errors import SuvError
from service.pet.times import decay_factor, frame_average_decay, parse_dt, parse_tm


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("084500.00 ", 8 * 3600 + 45 * 60),
        ("104830.351370", 10 * 3600 + 48 * 60 + 30.35137),
        ("1048", 10 * 3600 + 48 * 60),
        ("10", 10 * 3600),
        ("10:48:30", 10 * 3600 + 48 * 60 + 30),
        (b"104830\x00", 10 * 3600 + 48 * 60 + 30),
    ],
)
def test_parse_tm_forms(text: object, seconds: float) -> None:
    assert parse_tm(text, "T").total_seconds() == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize("text", ["", "2500", "1261", "ab", "12.5.3"])
def test_parse_tm_refuses(text: str) -> None:
    with pytest.raises(SuvError, match="MyTag"):
        parse_tm(text, "MyTag")


def test_parse_dt_drops_offset_and_keeps_fraction() -> None:
    value = parse_dt("20201217083045.250000+0100", "T")
    assert value == datetime(2020, 12, 17, 8, 30, 45, 250000)
    assert parse_dt("20201217", "T") == datetime(2020, 12, 17)
    assert parse_dt("2020121708", "T") - parse_dt("20201217", "T") == timedelta(hours=8)


def test_decay_arithmetic() -> None:
    assert decay_factor(6586.2, 6586.2) == pytest.approx(0.5, rel=1e-15)
    # The frame average lies between the decay at frame start and at frame end ...
    start, end = decay_factor(3600, 6586.2), decay_factor(3900, 6586.2)
    average = frame_average_decay(3600, 300, 6586.2)
    assert end < average < start
    # ... and equals the integral mean, checked by the trapezoid rule on a fine grid.
    n = 20000
    samples = [decay_factor(3600 + 300 * i / n, 6586.2) for i in range(n + 1)]
    trapezoid = (sum(samples) - (samples[0] + samples[-1]) / 2) / n
    assert average == pytest.approx(trapezoid, rel=1e-9)
    assert frame_average_decay(3600, 0, 6586.2) == decay_factor(3600, 6586.2)
    assert math.isclose(frame_average_decay(0, 1e-9, 100.0), 1.0, rel_tol=1e-9)
