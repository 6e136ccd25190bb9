"""The patient and study attributes a derived object copies from its source, made valid.

Result objects (SEG, RTSTRUCT, SR) copy the source's Patient and Study modules. Sources break
them in ways that must not stop a segmentation: a PatientBirthDate written ``1956-03-14``, an
absent AccessionNumber, a PatientSex of ``U``, PatientIdentityRemoved ``YES`` without the
DeidentificationMethod that PS3.3 C.7.1.1 then requires. :func:`derived_source` gives the copy
to derive from (only valid values; ISO dates and times normalised, the rest dropped) and notes
that name each changed attribute but never its value, which is patient data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pydicom.dataset import Dataset

from service.dicom.defined_terms import PatientSex
from service.dicom.volume import Volume

#: Type 2 attributes of the Patient and General Study modules: present, empty when unknown.
TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
#: The method fedseg states when a source says its identity was removed but not how.
UNSTATED_METHOD = "PatientIdentityRemoved YES in source; method not stated"
_DEIDENTIFICATION = (
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
)
_ISO_DATE = re.compile(r"^(\d{4})[-./](\d{2})[-./](\d{2})$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_AGE = re.compile(r"^\d{3}[DWMY]$")
_SEX_WORDS = {"MALE": "M", "FEMALE": "F", "OTHER": "O"}


@dataclass(frozen=True)
class DerivedSource:
    """A source header safe to derive from, and what was changed to make it so."""

    header: Dataset
    notes: tuple[str, ...] = field(default_factory=tuple)


def _date(text: str) -> str | None:
    match = _ISO_DATE.match(text)
    candidate = "".join(match.groups()) if match else text
    try:
        datetime.strptime(candidate, "%Y%m%d")
    except ValueError:
        return None
    return candidate


def _time(text: str) -> str | None:
    candidate = text.replace(":", "")
    if not _TIME.match(candidate):
        return None
    hours, minutes, seconds = int(candidate[:2]), candidate[2:4], candidate[4:6]
    if hours > 23 or (minutes and int(minutes) > 59) or (seconds and int(seconds) > 60):
        return None
    return candidate


def _sex(text: str) -> str | None:
    value = _SEX_WORDS.get(text.upper(), text.upper())
    return value if value in {s.value for s in PatientSex} else None


def _age(text: str) -> str | None:
    return text.upper() if _AGE.match(text.upper()) else None


def _positive_number(text: str) -> str | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return text if math.isfinite(number) and number > 0 else None


_CHECKS: dict[str, Callable[[str], str | None]] = {
    "PatientBirthDate": _date,
    "StudyDate": _date,
    "PatientBirthTime": _time,
    "StudyTime": _time,
    "PatientSex": _sex,
    "PatientAge": _age,
    "PatientSize": _positive_number,
    "PatientWeight": _positive_number,
}


def _raw_text(ds: Dataset, keyword: str) -> str:
    """An element's value as stored, without pydicom's value validation."""
    element = ds[keyword]
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").strip(" \x00")
    return "" if value is None else str(value).strip()


def derived_source(volume: Volume) -> DerivedSource:
    """A copy of ``volume``'s first header with valid Patient and Study attributes.

    Invalid values of Type 2 attributes become empty, of optional ones are removed; ISO-style
    dates (``1956-03-14``), ``HH:MM:SS`` times and spelled-out sexes are normalised.
    Absent Type 2 attributes are added empty. The header objects of ``volume`` stay unchanged.
    """
    header = Dataset()
    header.update(volume.header)  # a new element dict; elements are replaced, never changed
    notes = []
    for keyword, check in _CHECKS.items():
        if keyword not in header:
            continue
        text = _raw_text(header, keyword)
        if not text:
            continue
        valid = check(text)
        if valid == text:
            continue
        vr = header[keyword].VR
        del header[keyword]
        if valid is not None:
            header.add_new(keyword, vr, valid)
            notes.append(f"{keyword} was not in DICOM form; normalised in the results")
        elif keyword in TYPE2_KEYWORDS:
            header.add_new(keyword, vr, "")
            notes.append(f"{keyword} was invalid; left empty in the results")
        else:
            notes.append(f"{keyword} was invalid; left out of the results")
    for keyword in TYPE2_KEYWORDS:
        if keyword not in header:
            setattr(header, keyword, "")
    return DerivedSource(header=header, notes=tuple(notes))


def state_deidentification(ds: Dataset, source: Dataset) -> None:
    """Carry a de-identified source's statement into ``ds``, valid per PS3.3 C.7.1.1.

    PatientIdentityRemoved ``YES`` requires DeidentificationMethod or its code sequence: the
    source's are copied; when it has neither, ``ds`` says that the method is not known.
    """
    for keyword in _DEIDENTIFICATION:
        if keyword in source and keyword not in ds:
            ds[keyword] = source[keyword]
    if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
        return
    if not ds.get("DeidentificationMethod") and not ds.get("DeidentificationMethodCodeSequence"):
        ds.DeidentificationMethod = UNSTATED_METHOD
