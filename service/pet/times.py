"""DICOM date/time values (DA, TM, DT) as naive datetimes, and radioactive decay.

PET timing tags come in every legal and some illegal forms (``"084500.00 "``, ``"1048"``,
``"20201217083045.000000+0100"``). Offsets are dropped: every time of one series is local time
of one scanner, and only differences between them matter.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

from service.errors import SuvError

_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?$")


def tag_text(value: object) -> str:
    """A tag value as stripped text (bytes of private elements read as UN are decoded)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip().rstrip("\x00").strip() if value is not None else ""


def parse_da(value: object, tag: str) -> datetime:
    """Parse a DA value ``YYYYMMDD`` (also ``YYYY.MM.DD``).

    Raises
    ------
    SuvError
        If the value is empty or not a date; the message names ``tag``.
    """
    text = tag_text(value).replace(".", "").replace("-", "")
    try:
        return datetime.strptime(text, "%Y%m%d")
    except ValueError as exc:
        raise SuvError(f"{tag} is {text!r}, not a DICOM date (YYYYMMDD)") from exc


def parse_tm(value: object, tag: str) -> timedelta:
    """Parse a TM value ``HH[MM[SS[.FFFFFF]]]`` (also ``HH:MM:SS``) as time since midnight.

    Raises
    ------
    SuvError
        If the value is empty or not a time; the message names ``tag``.
    """
    text = tag_text(value).replace(":", "")
    match = _TM.match(text)
    if not match:
        raise SuvError(f"{tag} is {text!r}, not a DICOM time (HHMMSS.FFFFFF)")
    hours, minutes, seconds, fraction = match.groups()
    result = timedelta(
        hours=int(hours),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=int((fraction or "0").ljust(6, "0")),
    )
    if result >= timedelta(days=1) or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        raise SuvError(f"{tag} is {text!r}, not a valid time of day")
    return result


def parse_dt(value: object, tag: str) -> datetime:
    """Parse a DT value ``YYYYMMDD[HH[MM[SS[.F]]]][&ZZXX]``; the UTC offset is dropped.

    Raises
    ------
    SuvError
        If the value is empty or not a datetime; the message names ``tag``.
    """
    text = tag_text(value)
    match = _DT.match(text)
    if not match:
        raise SuvError(f"{tag} is {text!r}, not a DICOM datetime (YYYYMMDDHHMMSS.FFFFFF)")
    date, time = match.groups()
    return parse_da(date, tag) + (parse_tm(time, tag) if time else timedelta(0))


def combine(date: object, time: object, date_tag: str, time_tag: str) -> datetime:
    """Combine a DA and a TM value into one datetime."""
    return parse_da(date, date_tag) + parse_tm(time, time_tag)


def decay_factor(seconds: float, half_life_s: float) -> float:
    """Fraction of activity left after ``seconds`` (``2^(-t/T½)``)."""
    return 2.0 ** (-seconds / half_life_s)


def average_count_time_s(duration_s: float, half_life_s: float) -> float:
    """When, after a frame's start, the activity equals its mean over the frame (``T_ave``).

    ``T_ave = ln(λT / (1 − e^(−λT))) / λ`` (oncoray SUV manual, "Decay correction = START"),
    a little less than half the frame duration ``T``; 0 for a frame without duration.
    """
    if duration_s <= 0:
        return 0.0
    lam = math.log(2) / half_life_s
    return math.log(lam * duration_s / -math.expm1(-lam * duration_s)) / lam


def frame_average_decay(start_s: float, duration_s: float, half_life_s: float) -> float:
    """Mean fraction of activity left over a frame from ``start_s`` lasting ``duration_s``.

    An image that is not decay corrected shows the activity averaged over its frame, so the
    dose must be decayed by the same average: ``2^(-t0/T½) (1 − e^(−λΔ)) / (λΔ)``.
    """
    if duration_s <= 0:
        return decay_factor(start_s, half_life_s)
    lam = math.log(2) / half_life_s
    return (
        decay_factor(start_s, half_life_s) * (-math.expm1(-lam * duration_s)) / (lam * duration_s)
    )
