"""The values the store keeps must be conformant: UIDs (PS3.5 §9.1) and indexed attributes.

A received instance's UIDs become database keys and parts of WADO-RS URLs, and a few header
values are copied into the database for QIDO-RS. They are checked before anything is written:
a non-conformant UID (65 characters, ``../``, a NUL) or an indexed value the database cannot
hold (a NUL, which PostgreSQL refuses in text, or a Modality longer than its column) refuses
that one instance with a reason, instead of failing the whole request in the database.

Reasons name the attribute and the rule, never the value: a value can be anything a sender
put there, patient data included.
"""

from __future__ import annotations

import logging
import re

import pydicom
from pydicom.multival import MultiValue

from service.storage.errors import InstanceRejectedError

logger = logging.getLogger(__name__)

#: The UIDs the store keys on and builds URLs from.
IDENTIFYING_UIDS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
)

#: PS3.5 §9.1: at most 64 characters.
UID_MAX_LENGTH = 64

#: PS3.5 §9.1: digit components separated by dots; no leading zero unless the component is 0.
_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")

#: Maximum lengths (PS3.5 Table 6.2-1) enforced for the indexed attributes the store matches
#: on: Modality is a 16-character column; PatientID decides whether instances share a patient.
STRICT_LENGTHS: dict[str, tuple[str, int]] = {
    "Modality": ("CS", 16),
    "PatientID": ("LO", 64),
}

#: Maximum lengths of the other indexed VRs: longer values are kept (archives hold such data,
#: e.g. 18-character StudyIDs in TCIA's sarcoma PET) and logged, up to MAX_INDEXED_CHARS.
VR_MAX_LENGTH: dict[str, int] = {
    "AE": 16,
    "CS": 16,
    "DA": 8,
    "IS": 12,
    "LO": 64,
    "PN": 64,
    "SH": 16,
    "TM": 16,
}

#: No indexed value is stored beyond this many characters, whatever its VR: it bounds database
#: rows and QIDO-RS answers (the longest VR above allows 64 per component group).
MAX_INDEXED_CHARS = 1024


def uid_problem(value: object) -> str | None:
    """Why ``value`` is not a valid UID (PS3.5 §9.1), or None when it is one.

    The answer describes the value (its length, which rule it breaks) without quoting it.
    """
    if isinstance(value, MultiValue):
        return f"has {len(value)} values where one is expected"
    text = str(value)
    if not text:
        return "is empty"
    if len(text) > UID_MAX_LENGTH:
        return f"has {len(text)} characters, more than {UID_MAX_LENGTH}"
    if "\x00" in text:
        return "contains a NUL byte"
    if not _UID.fullmatch(text):
        return (
            "is not dot-separated numbers (only digits and dots, no empty component, "
            "no leading zero in a component)"
        )
    return None


def check_uids(ds: pydicom.Dataset, keywords: tuple[str, ...] = IDENTIFYING_UIDS) -> None:
    """Refuse an instance whose identifying UIDs are not valid UIDs.

    Raises
    ------
    InstanceRejectedError
        Naming the first invalid UID's attribute and the rule it breaks.
    """
    for keyword in keywords:
        problem = uid_problem(ds.get(keyword, ""))
        if problem is not None:
            raise InstanceRejectedError(
                f"{keyword} is not a valid UID (PS3.5 9.1): it {problem}; "
                "the sender must assign conformant UIDs"
            )


def check_indexed_values(values: dict[str, str], vrs: dict[str, str]) -> None:
    """Refuse indexed values the store cannot hold faithfully; log over-long tolerated ones.

    ``values`` maps keyword to the string the store would keep, ``vrs`` keyword to VR.

    Raises
    ------
    InstanceRejectedError
        For a NUL byte in any value, a strictly checked attribute beyond its VR's maximum
        length, or any value beyond :data:`MAX_INDEXED_CHARS`.
    """
    for keyword, value in values.items():
        vr = vrs.get(keyword, "")
        if "\x00" in value:
            raise InstanceRejectedError(
                f"{keyword} contains a NUL byte, which no {vr or 'text'} value may hold; "
                "the sender must correct the value"
            )
        strict = STRICT_LENGTHS.get(keyword)
        limit = strict[1] if strict else MAX_INDEXED_CHARS
        length = len(_longest_component(value, vr))
        if length > limit:
            raise InstanceRejectedError(
                f"{keyword} has {length} characters, more than the {limit} that "
                f"{'its VR ' + vr + ' allows' if strict else 'fedseg stores'}; "
                "the sender must correct the value"
            )
        usual = VR_MAX_LENGTH.get(vr)
        if usual is not None and length > usual:
            logger.debug(
                "%s has %d characters, more than VR %s allows (%d); kept", keyword, length, vr,
                usual,
            )  # fmt: skip


def _longest_component(value: str, vr: str) -> str:
    """The part of ``value`` that VR's length rule applies to (PN: per component group)."""
    if vr == "PN":
        return max(value.split("="), key=len)
    return value
