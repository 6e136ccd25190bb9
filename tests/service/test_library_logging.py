"""Library warnings through logging, with patient values withheld (#17 item 7, #19 item 4)."""

from __future__ import annotations

import logging

import pytest
from pydicom.errors import InvalidDicomError

from service.library_logging import (
    WITHHELD,
    OncePerMessage,
    library_message,
    redact_values,
    route_library_warnings,
)


def _record(name: str, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Invalid value for VR DA: '1956-03-14'.", "1956-03-14"),
        ("Invalid value for VR CS: 'Male'. Please see <https://x>", "Male"),
        ("Invalid value for VR AS: '56 years'.", "56 years"),
        ('The string "Quokkafield" is unlikely to represent the intended person name', "Quokk"),
        ('Value "12.5.x" is not valid for elements with a VR of DS', "12.5.x"),
    ],
)
def test_quoted_values_are_withheld(text: str, secret: str) -> None:
    redacted = redact_values(text)
    assert secret not in redacted
    assert WITHHELD in redacted


def test_vrs_keywords_and_apostrophes_survive() -> None:
    text = "Unable to convert '1956' to 'DA' object for 'PatientBirthDate'; it doesn't fit"
    assert redact_values(text) == (
        f"Unable to convert '{WITHHELD}' to 'DA' object for 'PatientBirthDate'; it doesn't fit"
    )


def test_library_message_drops_the_force_hint() -> None:
    exc = InvalidDicomError(
        "File is missing DICOM File Meta Information header or the 'DICM' prefix is missing "
        "from the header. Use force=True to force reading."
    )
    message = library_message(exc)
    assert "force" not in message
    assert message.endswith("from the header.") and "'DICM'" in message


def test_records_are_redacted_where_they_are_created(caplog: pytest.LogCaptureFixture) -> None:
    route_library_warnings()
    route_library_warnings()  # idempotent: one redacting factory, not two
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pydicom").warning("Invalid value for VR DA: %r", "1956-03-14")
    error = ValueError("Unable to convert '1956-03-14' to 'DA' object")
    logging.getLogger("service.test").error("series failed: %s", error)
    try:
        raise RuntimeError("wrapped") from error
    except RuntimeError:
        logging.getLogger("service.test").exception("job crashed")
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "1956-03-14" not in text
    assert text.count(WITHHELD) >= 3  # the library record, the argument, the traceback
    assert "raise RuntimeError" in text  # code lines of the traceback stay readable


def test_once_per_message_passes_each_library_message_once() -> None:
    once = OncePerMessage()
    assert once.filter(_record("pydicom", "a"))
    assert not once.filter(_record("pydicom", "a"))
    assert once.filter(_record("pydicom", "b"))
    assert once.filter(_record("highdicom.base", "a"))
    assert not once.filter(_record("highdicom.base", "a"))
    # fedseg's own loggers are never held back, nor is a logger that only shares a prefix.
    assert once.filter(_record("service.dicom", "a")) and once.filter(_record("service.dicom", "a"))
    assert once.filter(_record("pydicomx", "a")) and once.filter(_record("pydicomx", "a"))
