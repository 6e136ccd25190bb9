"""When a PET series was injected and scanned, from its headers (the QIBA decay reference).

:func:`scan_reference` picks the decay reference of a START-corrected series and
:func:`injection_datetime` the radiopharmaceutical start; both report what they chose and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from service.errors import SuvError
from service.pet.times import average_count_time_s, combine, parse_da, parse_dt, tag_text

GE_POST_INJECTION_DATETIME = Tag(0x0009, 0x100D)
GE_SOURCE = "GE private post-injection datetime (0009,100D)"
BACK_COMPUTED = "back-computed from AcquisitionTime, FrameReferenceTime and ActualFrameDuration"
#: Seconds by which back-computed references may disagree (vendors round T_ave differently)
#: and by which one may lie after its plane's acquisition start before it counts as implausible.
FRAME_TIMING_TOLERANCE_S = 1.0


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


@dataclass(frozen=True)
class ScanReference:
    """The decay reference of each plane of a START-corrected series, and where it came from."""

    times: tuple[datetime, ...]  # one per plane
    source: str
    warnings: tuple[str, ...] = ()

    @property
    def single(self) -> datetime | None:
        """The one reference of every plane, or None when planes have their own."""
        return self.times[0] if len(set(self.times)) == 1 else None

    @property
    def earliest(self) -> datetime:
        """The earliest reference of any plane."""
        return min(self.times)


def _series_datetime(ds: Dataset) -> datetime | None:
    if not has_value(ds, "SeriesTime") or not (
        has_value(ds, "SeriesDate") or has_value(ds, "AcquisitionDate")
    ):
        return None
    date = ds.SeriesDate if has_value(ds, "SeriesDate") else ds.AcquisitionDate
    return combine(date, ds.SeriesTime, "SeriesDate (0008,0021)", "SeriesTime (0008,0031)")


def _ge_datetime(ds: Dataset) -> datetime | None:
    if GE_POST_INJECTION_DATETIME not in ds:
        return None
    text = tag_text(ds[GE_POST_INJECTION_DATETIME].value)
    return parse_dt(text, "GE private post-injection datetime (0009,100D)") if text else None


def _frame_seconds(ds: Dataset, keyword: str) -> float | None:
    """A frame timing attribute (ms) in seconds; None when absent, not a number or not > 0."""
    if not has_value(ds, keyword):
        return None
    try:
        value = float(ds[keyword].value) / 1000.0
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def back_computed_references(
    headers: Sequence[Dataset], acquisitions: Sequence[datetime | None], half_life_s: float
) -> tuple[list[datetime] | None, str]:
    """Each plane's reference ``t_acq + T_ave − Δt``, or None and why the timing is unusable.

    ``Δt`` is FrameReferenceTime (0054,1300) and ``T`` ActualFrameDuration (0018,1242). A
    plane without them, or whose reference would fall after its own acquisition started (as
    FrameReferenceTime 0 gives), makes the whole series' frame timing count as absent: the
    planes of one series follow one convention, and GE, for one, stores frame start offsets.
    """
    references = []
    for k, (ds, start) in enumerate(zip(headers, acquisitions, strict=True)):
        offset = _frame_seconds(ds, "FrameReferenceTime")
        duration = _frame_seconds(ds, "ActualFrameDuration")
        if start is None or offset is None or duration is None:
            return None, (
                f"plane {k} lacks a positive FrameReferenceTime (0054,1300), "
                "ActualFrameDuration (0018,1242) or AcquisitionTime"
            )
        reference = start + timedelta(seconds=average_count_time_s(duration, half_life_s) - offset)
        if (reference - start).total_seconds() > FRAME_TIMING_TOLERANCE_S:
            return None, (
                f"plane {k}: FrameReferenceTime {offset * 1000:g} ms would put the reference "
                f"after the acquisition start (frame duration {duration * 1000:g} ms)"
            )
        references.append(reference)
    return references, ""


def scan_reference(
    headers: Sequence[Dataset], frames: Sequence[int | None], half_life_s: float
) -> ScanReference:
    """The decay reference of a START-corrected series (see ``docs/suv.md``).

    In order: DecayCorrectionDateTime; SeriesDate/Time unless after the earliest acquisition
    (QIBA); GE's private scan datetime; the reference back-computed from each plane's frame
    timing (oncoray SUV manual), per plane when planes disagree; the earliest acquisition.

    Raises
    ------
    SuvError
        If no usable series or acquisition date/time is present.
    """
    ds = headers[0]
    n = len(headers)
    if has_value(ds, "DecayCorrectionDateTime"):
        when = parse_dt(ds.DecayCorrectionDateTime, "DecayCorrectionDateTime (0018,9701)")
        return ScanReference((when,) * n, "DecayCorrectionDateTime (0018,9701)")
    acquisitions = [acquisition_datetime(h, f) for h, f in zip(headers, frames, strict=True)]
    known = [t for t in acquisitions if t is not None]
    earliest = min(known) if known else None
    series = _series_datetime(ds)
    ge = _ge_datetime(ds)
    if series is not None and (earliest is None or series <= earliest):
        warnings = []
        if ge is not None and abs((ge - series).total_seconds()) > 1:
            warnings.append(
                f"GE private scan datetime {ge.isoformat()} differs from SeriesTime; "
                "SeriesTime used (QIBA order)"
            )
        return ScanReference((series,) * n, "SeriesDate/SeriesTime", tuple(warnings))
    if earliest is None:
        if ge is not None:
            return ScanReference((ge,) * n, GE_SOURCE)
        raise SuvError(
            "SeriesDate/SeriesTime (0008,0021)/(0008,0031) and AcquisitionDate/Time "
            "(0008,0022)/(0008,0032) are missing; the scan time is unknown"
        )
    why = (
        f"SeriesTime {series.time().isoformat()} is after the earliest AcquisitionTime "
        f"{earliest.time().isoformat()} (series re-created?)"
        if series is not None
        else "SeriesDate/SeriesTime missing"
    )
    if ge is not None:
        return ScanReference((ge,) * n, GE_SOURCE, (f"{why}; GE private scan datetime used",))
    references, unusable = back_computed_references(headers, acquisitions, half_life_s)
    if references is None:
        return ScanReference(
            (earliest,) * n,
            "earliest AcquisitionDate/Time",
            (f"{why}; frame timing unusable ({unusable}); earliest acquisition used",),
        )
    if max(references) - min(references) <= timedelta(seconds=FRAME_TIMING_TOLERANCE_S):
        return ScanReference(
            (min(references),) * n, BACK_COMPUTED, (f"{why}; reference {BACK_COMPUTED}",)
        )
    return ScanReference(
        tuple(references),
        BACK_COMPUTED + ", per plane",
        (f"{why}; planes have their own reference, {BACK_COMPUTED}",),
    )


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
