"""QIDO-RS query parameters and matching (PS3.18 §8.3.4, PS3.4 §C.2.2.2), on plain data.

A search key is named by keyword (``PatientID``) or tag (``00100020``). Values match by single
value (case-insensitive for PN), ``*``/``?`` wildcards (not for UIDs, dates and times), UID
lists (``1.2,1.3``), date and time ranges (``20240101-20240131``, ``-20240131``), and empty or
``*`` universal matching. ``limit``, ``offset`` and ``includefield`` page and widen the
results; ``fuzzymatching=true`` is answered with literal matching and a ``Warning``. A key
fedseg cannot match is refused (:class:`QueryError`, HTTP 400): ignoring it would return more
than was asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword


class Level(IntEnum):
    """Query/retrieve levels, outermost first."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3


#: Search keys fedseg can match (keyword -> VR); each entity carries its parents' attributes.
SEARCH_KEYS: dict[str, str] = {
    "PatientName": "PN",
    "PatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyInstanceUID": "UI",
    "StudyDate": "DA",
    "StudyTime": "TM",
    "AccessionNumber": "SH",
    "StudyID": "SH",
    "StudyDescription": "LO",
    "ReferringPhysicianName": "PN",
    "ModalitiesInStudy": "CS",
    "SeriesInstanceUID": "UI",
    "Modality": "CS",
    "SeriesNumber": "IS",
    "SeriesDescription": "LO",
    "SeriesDate": "DA",
    "SeriesTime": "TM",
    "BodyPartExamined": "CS",
    "SOPInstanceUID": "UI",
    "SOPClassUID": "UI",
    "InstanceNumber": "IS",
}
#: Attributes computed per entity (returned, and addressable by includefield).
COMPUTED: dict[str, str] = {
    "NumberOfStudyRelatedSeries": "IS",
    "NumberOfStudyRelatedInstances": "IS",
    "NumberOfSeriesRelatedInstances": "IS",
    "RetrieveURL": "UR",
}
#: What each level returns without includefield (PS3.18 Tables 10.6.3-3 to -5, as stored).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances", "RetrieveURL",
    ),
    Level.SERIES: (
        "StudyInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
        "SeriesDate", "SeriesTime", "BodyPartExamined", "NumberOfSeriesRelatedInstances",
        "RetrieveURL",
    ),
    Level.INSTANCE: (
        "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SOPClassUID", "SOPInstanceUID",
        "InstanceNumber", "RetrieveURL",
    ),
}  # fmt: skip

_RESERVED = {"limit", "offset", "fuzzymatching", "includefield"}
_WILDCARD_VRS = {"PN", "LO", "SH", "CS", "LT", "ST", "UT", "UC"}
_RANGE_VRS = {"DA", "TM"}
_LIST_VRS = {"UI"}
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


class QueryError(ValueError):
    """A query parameter fedseg cannot honour; the message says which and what to do."""


@dataclass(frozen=True)
class Criterion:
    """One search key and the values it admits (several: UID list or modality list)."""

    keyword: str
    vr: str
    values: tuple[str, ...]

    def matches(self, have: Any) -> bool:
        """Whether a stored value (or any of a list of values) satisfies the key."""
        stored = have if isinstance(have, list | tuple) else [have]
        return any(
            _match_one(self.vr, wanted, str(value if value is not None else ""))
            for wanted in self.values
            for value in stored
        )


@dataclass(frozen=True)
class Query:
    """A parsed QIDO-RS request."""

    level: Level
    criteria: tuple[Criterion, ...] = ()
    #: Attributes to return beyond the level's defaults (keywords; ``all`` adds every one).
    include: frozenset[str] = frozenset()
    include_all: bool = False
    limit: int = 0
    offset: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def returned(self) -> list[str]:
        """Keywords to return at this level, defaults first."""
        known = {**SEARCH_KEYS, **COMPUTED}
        wanted = list(DEFAULT_RETURN[self.level])
        extra = sorted(known) if self.include_all else sorted(self.include)
        wanted += [k for k in extra if k not in wanted]
        # Universal matching (an empty key) also asks for the attribute back.
        wanted += [c.keyword for c in self.criteria if c.keyword not in wanted]
        return wanted


def keyword_of(name: str) -> str:
    """The keyword a query names by keyword or by tag; ``QueryError`` when it names none."""
    if _TAG.match(name):
        keyword = keyword_for_tag(int(name, 16))
        if not keyword:
            raise QueryError(f"{name} is not a DICOM tag fedseg knows")
        return keyword
    if tag_for_keyword(name) is None and name not in COMPUTED:
        raise QueryError(
            f"unknown query parameter {name!r}: use a DICOM keyword or tag, or one of "
            f"{', '.join(sorted(_RESERVED))}"
        )
    return name


def parse(
    params: Iterable[tuple[str, str]], level: Level, max_results: int, fixed: Iterable[str] = ()
) -> Query:
    """Parse query parameters for a search at ``level``.

    ``fixed`` names keys the path already sets (``StudyInstanceUID`` of
    ``/studies/{study}/series``); a query repeating them is refused.

    Raises
    ------
    QueryError
        For an unknown, unsupported, repeated or malformed parameter.
    """
    criteria: dict[str, Criterion] = {}
    include: set[str] = set()
    include_all = False
    limit, offset, warnings = max_results, 0, []
    for name, value in params:
        lowered = name.lower()
        if lowered == "limit":
            limit = _count(name, value, minimum=1)
            if limit > max_results:
                warnings.append(f"limit {limit} exceeds the maximum of {max_results}; capped")
                limit = max_results
        elif lowered == "offset":
            offset = _count(name, value, minimum=0)
        elif lowered == "fuzzymatching":
            if value.lower() not in {"true", "false"}:
                raise QueryError(f"fuzzymatching must be true or false, not {value!r}")
            if value.lower() == "true":
                warnings.append(
                    "The fuzzymatching parameter is not supported. "
                    "Only literal matching has been performed."
                )
        elif lowered == "includefield":
            for item in filter(None, (v.strip() for v in value.split(","))):
                if item.lower() == "all":
                    include_all = True
                else:
                    include.add(_includable(keyword_of(item)))
        else:
            keyword = keyword_of(name)
            if keyword in criteria or keyword in fixed:
                raise QueryError(f"search key {keyword} is given more than once")
            criteria[keyword] = _criterion(keyword, value, level)
    return Query(level, tuple(criteria.values()), frozenset(include), include_all, limit, offset,
                 tuple(warnings))  # fmt: skip


def _count(name: str, value: str, minimum: int) -> int:
    if not value.isdigit() or int(value) < minimum:
        raise QueryError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    return int(value)


def _includable(keyword: str) -> str:
    if keyword not in SEARCH_KEYS and keyword not in COMPUTED:
        raise QueryError(
            f"includefield {keyword} is not stored by fedseg; available: "
            f"{', '.join(sorted({*SEARCH_KEYS, *COMPUTED}))}"
        )
    return keyword


def _criterion(keyword: str, value: str, level: Level) -> Criterion:
    if keyword not in SEARCH_KEYS:
        tag = tag_for_keyword(keyword)
        shown = f"{keyword} ({tag:08X})" if tag is not None else keyword
        raise QueryError(
            f"search key {shown} is not supported; fedseg matches {', '.join(sorted(SEARCH_KEYS))}"
        )
    vr = SEARCH_KEYS[keyword]
    if keyword == "ModalitiesInStudy" and level is not Level.STUDY:
        raise QueryError("ModalitiesInStudy is a study-level key; search series by Modality")
    values = _split(vr, keyword, value)
    for wanted in values:
        _validate(keyword, vr, wanted)
    return Criterion(keyword, vr, values)


def _split(vr: str, keyword: str, value: str) -> tuple[str, ...]:
    if vr in _LIST_VRS or keyword in {"Modality", "ModalitiesInStudy"}:
        parts = tuple(p.strip() for p in re.split(r"[,\\]", value))
        return tuple(p for p in parts if p) or ("",)
    return (value,)


def _validate(keyword: str, vr: str, value: str) -> None:
    if value in {"", "*"}:
        return
    if vr not in _WILDCARD_VRS and ("*" in value or "?" in value):
        raise QueryError(f"{keyword} ({vr}) does not take wildcards; give the value or a range")
    if vr in _RANGE_VRS:
        pattern = _DATE if vr == "DA" else _TIME
        low, dash, high = value.partition("-")
        bounds = [b for b in (low, high) if b] if dash else [value]
        if not bounds or not all(pattern.match(b) for b in bounds):
            shown = "YYYYMMDD" if vr == "DA" else "HHMMSS"
            raise QueryError(
                f"{keyword} {value!r} is neither a {vr} value ({shown}) nor a range (A-B, -B, A-)"
            )
    if vr == "IS" and not value.lstrip("+-").isdigit():
        raise QueryError(f"{keyword} must be an integer, not {value!r}")


def _match_one(vr: str, wanted: str, have: str) -> bool:
    if wanted in {"", "*"}:
        return True
    if vr in _RANGE_VRS:
        return _in_range(vr, wanted, have.strip())
    if vr == "IS":
        return have.strip().lstrip("+").isdigit() and int(have) == int(wanted)
    if vr in _WILDCARD_VRS and ("*" in wanted or "?" in wanted):
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        flags = re.IGNORECASE | re.DOTALL if vr == "PN" else re.DOTALL
        return re.fullmatch(pattern, have, flags) is not None
    if vr == "PN":
        return wanted.casefold() == have.casefold()
    return wanted == have


def _in_range(vr: str, wanted: str, have: str) -> bool:
    if not have:
        return False
    low, dash, high = wanted.partition("-")
    if vr == "TM":
        have = _time(have, "0")
        low, high = _time(low, "0") if low else "", _time(high, "9") if high else ""
    if not dash:
        return have == low
    return (not low or have >= low) and (not high or have <= high)


def _time(value: str, fill: str) -> str:
    """HHMMSS.ffffff; missing parts are zeros (lower bound) or their maximum (upper bound)."""
    whole, _, fraction = value.partition(".")
    top = "235959"
    whole = whole + (top[len(whole) :] if fill == "9" else "0" * (6 - len(whole)))
    return f"{whole}.{fraction.ljust(6, fill)}"
