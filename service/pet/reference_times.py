"""When a START-corrected PET series' values refer to: the decay reference, from its headers.

:func:`scan_reference` picks the decay reference of each plane and reports what it chose and
why; ``docs/suv.md`` states the order (DICOM, QIBA's vendor-neutral pseudo-code, the oncoray
SUV manual).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from service.errors import SuvError
from service.pet.times import average_count_time_s, combine, parse_dt, tag_text

GE_POST_INJECTION_DATETIME = Tag(0x0009, 0x100D)
SIEMENS_DECAY_DATETIME = Tag(0x0071, 0x1022)
GE_SOURCE = "GE private scan datetime (0009,100D)"
SIEMENS_SOURCE = "Siemens private decay correction datetime (0071,1022)"
#: Vendor datetimes of the decay reference: (tag, its private creator, source).
VENDOR_DATETIMES = (
    (GE_POST_INJECTION_DATETIME, "GEMS_PETD_01", GE_SOURCE),
    (SIEMENS_DECAY_DATETIME, "SIEMENS MED PT", SIEMENS_SOURCE),
)
BACK_COMPUTED = "back-computed from AcquisitionTime, FrameReferenceTime and ActualFrameDuration"
BACK_COMPUTED_GE = "back-computed from AcquisitionTime and FrameReferenceTime (GE: bed start)"
#: Seconds by which back-computed references may disagree (vendors round T_ave differently)
#: and by which a reference may lie after its plane's acquisition start before it counts as
#: implausible.
FRAME_TIMING_TOLERANCE_S = 1.0
_GE = re.compile(r"^(GE|GEMS|GEHC|GENERAL ELECTRIC)([^A-Z]|$)")
_DAY = timedelta(days=1)


def has_value(ds: Dataset, keyword: str) -> bool:
    """Whether ``keyword`` is present with a non-empty value."""
    return keyword in ds and ds[keyword].value not in (None, "", b"")


def is_ge(ds: Dataset) -> bool:
    """Whether Manufacturer (0008,0070) is GE, whose FrameReferenceTime is the bed start."""
    return bool(_GE.match(str(ds.get("Manufacturer", "") or "").strip().upper()))


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


def _scan_date(ds: Dataset) -> object:
    """The first date of the scan present: Acquisition, Series, Content or Study Date."""
    for keyword in ("AcquisitionDate", "SeriesDate", "ContentDate", "StudyDate"):
        if has_value(ds, keyword):
            return ds[keyword].value
    return None


def acquisition_datetime(ds: Dataset, frame: int | None) -> datetime | None:
    """Acquisition start of one plane: per-frame content, AcquisitionDateTime, or Date+Time.

    A plane whose AcquisitionDate was removed takes the series (content, study) date.
    """
    content = functional_group(ds, "FrameContentSequence", frame) if frame else None
    if content is not None and has_value(content, "FrameAcquisitionDateTime"):
        return parse_dt(content.FrameAcquisitionDateTime, "FrameAcquisitionDateTime (0018,9074)")
    if has_value(ds, "AcquisitionDateTime"):
        return parse_dt(ds.AcquisitionDateTime, "AcquisitionDateTime (0008,002A)")
    date = _scan_date(ds)
    if has_value(ds, "AcquisitionTime") and date is not None:
        return combine(
            date, ds.AcquisitionTime, "AcquisitionDate (0008,0022)", "AcquisitionTime (0008,0032)"
        )
    return None


def frame_reference_datetime(ds: Dataset, frame: int | None) -> datetime | None:
    """Enhanced PET's FrameReferenceDateTime (0018,9151) of one frame, when present."""
    content = functional_group(ds, "FrameContentSequence", frame) if frame else None
    if content is not None and has_value(content, "FrameReferenceDateTime"):
        return parse_dt(content.FrameReferenceDateTime, "FrameReferenceDateTime (0018,9151)")
    return None


def frame_duration_ms(ds: Dataset, frame: int | None) -> float:
    """A plane's frame duration in ms: FrameAcquisitionDuration or ActualFrameDuration; else 0."""
    content = functional_group(ds, "FrameContentSequence", frame) if frame else None
    for item, keyword in ((content, "FrameAcquisitionDuration"), (ds, "ActualFrameDuration")):
        if item is not None and has_value(item, keyword):
            try:
                value = float(item[keyword].value)
            except (TypeError, ValueError):
                return 0.0
            return value if math.isfinite(value) else 0.0
    return 0.0


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
    date = next((ds[k].value for k in ("SeriesDate", "AcquisitionDate") if has_value(ds, k)), None)
    if not has_value(ds, "SeriesTime") or date is None:
        return None
    return combine(date, ds.SeriesTime, "SeriesDate (0008,0021)", "SeriesTime (0008,0031)")


def on_day_of(when: datetime, anchor: datetime) -> datetime:
    """``when`` moved by whole days to within 12 h of ``anchor`` (its date was replaced)."""
    return when - round((when - anchor) / _DAY) * _DAY


def _vendor_datetimes(ds: Dataset) -> list[tuple[datetime, str]]:
    """GE's and Siemens' private decay-reference datetimes present under their own creator."""
    found = []
    for tag, creator, source in VENDOR_DATETIMES:
        if tag not in ds:
            continue
        owner = ds.get(Tag(tag.group, tag.element >> 8))
        if owner is not None and tag_text(owner.value).upper() != creator:
            continue  # the block belongs to another vendor: the element means something else
        text = tag_text(ds[tag].value)
        if text:
            found.append((parse_dt(text, source), source))
    return found


def _frame_seconds(ds: Dataset, keyword: str) -> float | None:
    """A frame timing attribute (ms) in seconds; None when absent, not a number or < 0."""
    if not has_value(ds, keyword):
        return None
    try:
        value = float(ds[keyword].value) / 1000.0
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def back_computed_references(
    headers: Sequence[Dataset],
    frames: Sequence[int | None],
    acquisitions: Sequence[datetime | None],
    half_life_s: float,
) -> tuple[list[datetime] | None, str]:
    """Each plane's reference from its frame timing, or None and why the timing is unusable.

    DICOM's FrameReferenceTime (0054,1300) ``Δt`` is the time from the series reference to
    the frame's average count rate, so ``t_ref = t_acq + T_ave − Δt`` with ``T`` its frame
    duration. GE stores the bed's start offset instead, so ``t_ref = t_acq − Δt`` (no ``T``
    needed); where GE repeats the series start as every bed's AcquisitionTime those
    references disagree, and the common AcquisitionTime is the reference. A non-GE plane
    without the timing, or whose reference would fall after its own acquisition started
    (FrameReferenceTime 0), makes the whole series' timing count as absent.
    """
    ge = is_ge(headers[0])
    references = []
    for k, (ds, frame, start) in enumerate(zip(headers, frames, acquisitions, strict=True)):
        offset = _frame_seconds(ds, "FrameReferenceTime")
        duration = frame_duration_ms(ds, frame) / 1000.0
        if start is None or offset is None or (not ge and (offset <= 0 or duration <= 0)):
            needed = "FrameReferenceTime (0054,1300)" + (
                "" if ge else " above 0 or a positive ActualFrameDuration (0018,1242)"
            )
            return None, f"plane {k} lacks AcquisitionTime (0008,0032) or a {needed}"
        average = 0.0 if ge else average_count_time_s(duration, half_life_s)
        reference = start + timedelta(seconds=average - offset)
        if (reference - start).total_seconds() > FRAME_TIMING_TOLERANCE_S:
            return None, (
                f"plane {k}: FrameReferenceTime {offset * 1000:g} ms would put the reference "
                f"after the acquisition start (frame duration {duration * 1000:g} ms)"
            )
        references.append(reference)
    if ge and _spread_s(references) > FRAME_TIMING_TOLERANCE_S:
        starts = [t for t in acquisitions if t is not None]
        if _spread_s(starts) > FRAME_TIMING_TOLERANCE_S:
            return None, "GE bed starts disagree and so do the AcquisitionTimes"
        references = [min(starts)] * len(starts)  # GE's AcquisitionTime is the series start
    return references, ""


def _spread_s(times: Sequence[datetime]) -> float:
    return (max(times) - min(times)).total_seconds()


def scan_reference(
    headers: Sequence[Dataset], frames: Sequence[int | None], half_life_s: float
) -> ScanReference:
    """The decay reference of a START-corrected series (see ``docs/suv.md``).

    In order: DecayCorrectionDateTime; SeriesDate/Time unless after the earliest acquisition
    (QIBA); GE's or Siemens' private datetime unless after the acquisition began; the reference
    back-computed from each plane's frame timing (oncoray SUV manual), per plane when planes
    disagree; the earliest acquisition. Acquisition and vendor dates more than 12 h from the
    series date (de-identified) are moved to the series day by their time of day.

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
    series = _series_datetime(ds)
    acquisitions = [acquisition_datetime(h, f) for h, f in zip(headers, frames, strict=True)]
    vendor = _vendor_datetimes(ds)
    warnings: list[str] = []
    if series is not None:
        acquisitions, vendor = _on_series_day(series, acquisitions, vendor, warnings)
    known = [t for t in acquisitions if t is not None]
    earliest = min(known) if known else None
    if series is not None and (earliest is None or series <= earliest):
        warnings += [
            f"{source} {when.isoformat()} differs from SeriesTime; SeriesTime used (QIBA order)"
            for when, source in vendor
            if abs((when - series).total_seconds()) > 1
        ]
        return ScanReference((series,) * n, "SeriesDate/SeriesTime", tuple(warnings))
    if earliest is None:
        if vendor:
            return ScanReference((vendor[0][0],) * n, vendor[0][1], tuple(warnings))
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
    for when, source in vendor:
        if (when - earliest).total_seconds() <= FRAME_TIMING_TOLERANCE_S:
            return ScanReference((when,) * n, source, (*warnings, f"{why}; {source} used"))
        warnings.append(f"{source} {when.isoformat()} is after the acquisition began; not used")
    return _from_frame_timing(headers, frames, acquisitions, earliest, half_life_s, why, warnings)


def _on_series_day(
    series: datetime,
    acquisitions: list[datetime | None],
    vendor: list[tuple[datetime, str]],
    warnings: list[str],
) -> tuple[list[datetime | None], list[tuple[datetime, str]]]:
    """Acquisition and vendor datetimes more than 12 h from the series moved to its day."""
    half_day = _DAY / 2
    moved_acquisitions = [
        on_day_of(t, series) if t is not None and abs(t - series) > half_day else t
        for t in acquisitions
    ]
    if moved_acquisitions != acquisitions:
        warnings.append(
            "AcquisitionDate (0008,0022) is more than 12 h from SeriesDate (0008,0021) "
            "(de-identified?); acquisitions placed on the series day by their time of day"
        )
    moved_vendor = []
    for when, source in vendor:
        if abs(when - series) > half_day:
            warnings.append(f"{source} date differs from SeriesDate; its time of day used")
            when = on_day_of(when, series)
        moved_vendor.append((when, source))
    return moved_acquisitions, moved_vendor


def _from_frame_timing(
    headers: Sequence[Dataset],
    frames: Sequence[int | None],
    acquisitions: Sequence[datetime | None],
    earliest: datetime,
    half_life_s: float,
    why: str,
    warnings: list[str],
) -> ScanReference:
    """Rows R4–R6 of the decay table: back-computed references, else the earliest acquisition."""
    n = len(headers)
    references, unusable = back_computed_references(headers, frames, acquisitions, half_life_s)
    source = BACK_COMPUTED_GE if is_ge(headers[0]) else BACK_COMPUTED
    if references is None:
        note = f"{why}; frame timing unusable ({unusable}); earliest acquisition used"
        return ScanReference((earliest,) * n, "earliest AcquisitionDate/Time", (*warnings, note))
    if _spread_s(references) <= FRAME_TIMING_TOLERANCE_S:
        note = f"{why}; reference {source}"
        return ScanReference((min(references),) * n, source, (*warnings, note))
    note = f"{why}; planes have their own reference, {source}"
    return ScanReference(tuple(references), source + ", per plane", (*warnings, note))
