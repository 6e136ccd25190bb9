"""DICOM JSON (PS3.18 F.2) for QIDO-RS results and STOW-RS responses."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import tag_for_keyword

from service.storage.ingest import QIDO_ATTRIBUTES

#: STOW-RS failure reasons (PS3.18 Table I.2-2 / PS3.4 C.4.2.1.4).
FAILURE_PROCESSING = 0x0110
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_OUT_OF_RESOURCES = 0xA700


def tag(keyword: str) -> str:
    """The 8-hex-digit tag of a keyword."""
    number = tag_for_keyword(keyword)
    if number is None:
        raise KeyError(f"unknown DICOM keyword {keyword!r}")
    return f"{number:08X}"


def element(keyword: str, vr: str, *values: Any) -> dict[str, Any]:
    """One DICOM JSON attribute (empty when no values)."""
    present = [v for v in values if v not in (None, "")]
    if vr == "PN":
        present = [{"Alphabetic": str(v)} for v in present]
    elif vr in {"IS", "US", "UL"}:
        present = [int(float(v)) for v in present]
    entry: dict[str, Any] = {"vr": vr}
    if present:
        entry["Value"] = present
    return {tag(keyword): entry}


def uid(keyword: str, value: str) -> dict[str, Any]:
    """A UI attribute."""
    return element(keyword, "UI", value)


def copied(attributes: dict[str, Any], keywords: tuple[str, ...]) -> dict[str, Any]:
    """The QIDO attributes stored for an instance, as DICOM JSON."""
    out: dict[str, Any] = {}
    for keyword in keywords:
        out |= element(keyword, QIDO_ATTRIBUTES[keyword], attributes.get(keyword))
    return out


def reference(sop_class: str, sop_instance: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """A ReferencedSOPSequence / FailedSOPSequence item."""
    item = uid("ReferencedSOPClassUID", sop_class) | uid("ReferencedSOPInstanceUID", sop_instance)
    for value in extra.values():
        item |= value
    return item


def sequence(keyword: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQ attribute (omitted values when empty)."""
    entry: dict[str, Any] = {"vr": "SQ"}
    if items:
        entry["Value"] = items
    return {tag(keyword): entry}
