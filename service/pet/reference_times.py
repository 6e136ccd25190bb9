"""When a PET series was injected and scanned, from its headers (the QIBA decay reference).

:func:`scan_datetime` picks the decay reference of a START-corrected series and
:func:`injection_datetime` the radiopharmaceutical start; both report what they chose and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from service.errors import SuvError
from service.pet.times import combine, parse_da, parse_dt, tag_text

GE_POST_INJECTION_DATETIME = Tag(0x0009, 0x100D)


def has_value(ds: Dataset, keyword: str) -> bool:
    """Whether ``keyword`` is present with a non-empty value."""
    return keyword in ds and ds[keyword].value not in (None, "", b"")


def radiopharmaceutical(ds: Dataset) -> Dataset:
    """The first RadiopharmaceuticalInformationSequence item; SuvError when there is none."""
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise SuvError(
            "RadiopharmaceuticalInformationSequence (0054,0016) is missing or empty; the "
            "injected dose and injection time are unknown"
        )
    item: Dataset = seq[0]
    return item


def functional_group(ds: Dataset, keyword: str, frame: int | None = None) -> Dataset | None:
    """A functional-group macro of a multi-frame header (per-frame first, then shared)."""
    groups = []
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame - 1])
    if ds.get("SharedFunctionalGroupsSequence"):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        if group.get(keyword):
            item: Dataset = group[keyword][0]
            return item
    return None


def acquisition_datetime(ds: Dataset, frame: int | None) -> datetime | None:
    """Acquisition start of one plane: per-frame content, AcquisitionDateTime, or Date+Time."""
    content = functional_group(ds, "FrameContentSequence", frame) if frame else None
    if content is not None and has_value(content, "FrameAcquisitionDateTime"):
        return parse_dt(content.FrameAcquisitionDateTime, "FrameAcquisitionDateTime (0018,9074)")
    if has_value(ds, "AcquisitionDateTime"):
        return parse_dt(ds.AcquisitionDateTime, "AcquisitionDateTime (0008,002A)")
    if has_value(ds, "AcquisitionTime"):
        date = ds.get("AcquisitionDate") or ds.get("SeriesDate")
        return combine(
            date, ds.AcquisitionTime, "AcquisitionDate (0008,0022)", "AcquisitionTime (0008,0032)"
        )
    return None


def scan_datetime(
    headers: Sequence[Dataset], frames: Sequence[int | None]
) -> tuple[datetime, str, list[str]]:
    """The decay reference of a START-corrected series, where it came from, and warnings.

    Raises
    ------
    SuvError
        If no usable series or acquisition date/time is present.
    """
    ds = headers[0]
    warnings: list[str] = []
    if has_value(ds, "DecayCorrectionDateTime"):
        return (
            parse_dt(ds.DecayCorrectionDateTime, "DecayCorrectionDateTime (0018,9701)"),
            "DecayCorrectionDateTime (0018,9701)",
            warnings,
        )
    ge_text = (
        tag_text(ds[GE_POST_INJECTION_DATETIME].value) if GE_POST_INJECTION_DATETIME in ds else ""
    )
    acquisitions = [
        t for t in (acquisition_datetime(h, f) for h, f in zip(headers, frames, strict=True)) if t
    ]
    earliest = min(acquisitions) if acquisitions else None
    series = None
    if has_value(ds, "SeriesTime") and (
        has_value(ds, "SeriesDate") or has_value(ds, "AcquisitionDate")
    ):
        date = ds.SeriesDate if has_value(ds, "SeriesDate") else ds.AcquisitionDate
        series = combine(date, ds.SeriesTime, "SeriesDate (0008,0021)", "SeriesTime (0008,0031)")
    if ge_text:
        ge = parse_dt(ge_text, "GE private post-injection datetime (0009,100D)")
        if series is not None and abs((ge - series).total_seconds()) > 1:
            warnings.append(f"GE post-injection datetime {ge.isoformat()} used; SeriesTime differs")
        return ge, "GE private post-injection datetime (0009,100D)", warnings
    if series is None and earliest is None:
        raise SuvError(
            "SeriesDate/SeriesTime (0008,0021)/(0008,0031) and AcquisitionDate/Time "
            "(0008,0022)/(0008,0032) are missing; the scan time is unknown"
        )
    if series is None:
        warnings.append("SeriesDate/SeriesTime missing; earliest acquisition time used")
        return earliest, "earliest AcquisitionDate/Time", warnings  # type: ignore[return-value]
    if earliest is not None and series > earliest:
        warnings.append(
            f"SeriesTime {series.time().isoformat()} is after the earliest AcquisitionTime "
            f"{earliest.time().isoformat()} (series re-created?); earliest acquisition used"
        )
        return earliest, "earliest AcquisitionDate/Time", warnings
    return series, "SeriesDate/SeriesTime", warnings


def injection_datetime(ds: Dataset, scan: datetime) -> tuple[datetime, list[str]]:
    """Radiopharmaceutical start datetime; a time alone takes the scan date (or the day before).

    Raises
    ------
    SuvError
        If neither RadiopharmaceuticalStartDateTime nor RadiopharmaceuticalStartTime is usable.
    """
    info = radiopharmaceutical(ds)
    if has_value(info, "RadiopharmaceuticalStartDateTime"):
        return parse_dt(
            info.RadiopharmaceuticalStartDateTime, "RadiopharmaceuticalStartDateTime (0018,1078)"
        ), []
    if not has_value(info, "RadiopharmaceuticalStartTime"):
        raise SuvError(
            "RadiopharmaceuticalStartDateTime (0018,1078) and RadiopharmaceuticalStartTime "
            "(0018,1072) are both missing; the injection time is unknown"
        )
    day = parse_da(scan.strftime("%Y%m%d"), "scan date")
    start = combine(
        day.strftime("%Y%m%d"),
        info.RadiopharmaceuticalStartTime,
        "scan date",
        "RadiopharmaceuticalStartTime (0018,1072)",
    )
    if start > scan:
        # Only a time of day is given, and it lies after the scan: injected before midnight.
        return start - timedelta(days=1), [
            "RadiopharmaceuticalStartTime is after the scan time: injection taken to be on the "
            "previous day"
        ]
    return start, []
