"""When the radiopharmaceutical was injected, relative to the scan (oncoray SUV manual).

RadiopharmaceuticalStartDateTime (0018,1078) states it; RadiopharmaceuticalStartTime
(0018,1072), the older and still most common form, gives only a time of day, and
de-identification often replaces the dates but keeps the times. A time of day fixes the
injection only when one more day of uptake would be implausible for the radionuclide; for
long-lived ones (Cu-64, Zr-89, I-124) fedseg asks for the date instead of guessing the day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydicom.dataset import Dataset

from service.errors import SuvError
from service.pet.reference_times import has_value, radiopharmaceutical
from service.pet.times import parse_dt, parse_tm

#: More half-lives than this between injection and scan is implausible (nothing left to image).
MAX_HALF_LIVES = 10.0
_DAY = timedelta(days=1)
_DATETIME = "RadiopharmaceuticalStartDateTime (0018,1078)"
_TIME = "RadiopharmaceuticalStartTime (0018,1072)"


def plausible_uptake(seconds: float, half_life_s: float) -> bool:
    """Whether an injection ``seconds`` before the reference is possible: 0 to 10 half-lives."""
    return 0 <= seconds <= MAX_HALF_LIVES * half_life_s


def injection_datetime(
    ds: Dataset, scan: datetime, half_life_s: float
) -> tuple[datetime, list[str]]:
    """The injection datetime for a scan whose decay reference is ``scan``, and notes.

    RadiopharmaceuticalStartDateTime when it puts the injection 0 to 10 half-lives before
    ``scan``. Otherwise (absent, unreadable, or a date that disagrees with the scan's, as
    de-identification leaves it) the time of day alone: on the scan day, or the day before
    when it is later than the scan.

    Raises
    ------
    SuvError
        If no injection time is present, or only a time of day is usable and the day is
        ambiguous (one more day of uptake would also be plausible) or the uptake implausible.
    """
    info = radiopharmaceutical(ds)
    notes: list[str] = []
    start = None
    if has_value(info, "RadiopharmaceuticalStartDateTime"):
        try:
            start = parse_dt(info.RadiopharmaceuticalStartDateTime, _DATETIME)
        except SuvError as exc:
            if not has_value(info, "RadiopharmaceuticalStartTime"):
                raise
            notes.append(f"{exc}; {_TIME} used")
    if start is not None:
        if plausible_uptake((scan - start).total_seconds(), half_life_s):
            return start, notes
        hours = (scan - start).total_seconds() / 3600
        notes.append(
            f"{_DATETIME} is {hours:.1f} h before the scan, implausible for a half-life of "
            f"{half_life_s / 3600:.2f} h (dates de-identified?); its time of day used"
        )
        time_of_day = start - start.replace(hour=0, minute=0, second=0, microsecond=0)
    elif has_value(info, "RadiopharmaceuticalStartTime"):
        time_of_day = parse_tm(info.RadiopharmaceuticalStartTime, _TIME)
    else:
        raise SuvError(f"{_DATETIME} and {_TIME} are both missing; the injection time is unknown")
    return _on_scan_day(time_of_day, scan, half_life_s, notes)


def _on_scan_day(
    time_of_day: timedelta, scan: datetime, half_life_s: float, notes: list[str]
) -> tuple[datetime, list[str]]:
    """The injection at ``time_of_day`` on the scan day or the day before, if unambiguous."""
    start = scan.replace(hour=0, minute=0, second=0, microsecond=0) + time_of_day
    if start > scan:
        start -= _DAY
        notes.append(f"{_TIME} is after the scan time: injection taken to be on the previous day")
    uptake = (scan - start).total_seconds()
    if not plausible_uptake(uptake, half_life_s):
        raise SuvError(
            f"only the time of day of the injection is usable ({_DATETIME} missing or "
            f"inconsistent with the scan date), and it gives {uptake / 3600:.1f} h of uptake, "
            f"more than {MAX_HALF_LIVES:g} half-lives; check the injection date and time"
        )
    if plausible_uptake(uptake + _DAY.total_seconds(), half_life_s):
        raise SuvError(
            f"only the time of day of the injection is usable ({_DATETIME} missing or "
            f"inconsistent with the scan date): with a half-life of {half_life_s / 3600:.1f} h "
            f"an uptake of {uptake / 3600:.1f} h and one a day or more longer are both "
            f"possible; add the injection date to {_DATETIME}"
        )
    return start, notes
