"""Library warnings through logging: once each, quiet under ``-q``, patient values withheld.

pydicom and highdicom report a suspicious header value by quoting it (``Invalid value for VR
DA: '1956-03-14'``, ``The string "Smith" is unlikely to represent the intended person name``),
and pydicom both logs and warns each one, so a CLI user saw every message twice and a server
log or a job error carried patient values. :func:`route_library_warnings` sends
:mod:`warnings` to logging, drops pydicom's duplicate and withholds quoted values in library
records and exception texts; :func:`library_message` does the same for a library exception
that a fedseg error quotes.
"""

from __future__ import annotations

import logging
import re
import traceback
import warnings
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from pydicom.datadict import keyword_dict
from pydicom.valuerep import VR

#: Loggers whose messages quote header values (``py.warnings``: warnings not routed here).
LIBRARIES = ("pydicom", "highdicom", "pynetdicom", "py.warnings")
WITHHELD = "<value withheld>"

#: A quoted value: the quote is not part of a word (``doesn't`` opens nothing).
_QUOTED = re.compile(r"""(?<![\w])(['"])(.*?)\1(?![\w])""", re.DOTALL)
#: Quoted words that are never patient values: VRs and what pydicom's messages name.
_SAFE_WORDS = frozenset({vr.value for vr in VR} | {"DICM"})
_FORCE_HINT = re.compile(r"\s*Use force=True to force reading\.?", re.IGNORECASE)


def redact_values(text: str) -> str:
    """``text`` with every quoted value withheld, except DICOM keywords and VR names."""

    def replace(match: re.Match[str]) -> str:
        quote, value = match.group(1), match.group(2)
        if value in _SAFE_WORDS or value in keyword_dict:
            return match.group(0)
        return f"{quote}{WITHHELD}{quote}"

    return _QUOTED.sub(replace, text)


def library_message(exc: BaseException) -> str:
    """A library exception's message, fit for a fedseg error: values withheld, no force hint.

    pydicom ends a refusal with "Use force=True to force reading", advice for its API that a
    command-line or PACS user cannot follow.
    """
    return _FORCE_HINT.sub("", redact_values(str(exc))).strip()


def redact_traceback(exc: BaseException) -> str:
    """A formatted traceback whose exception messages (not its code lines) are redacted."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines).rstrip("\n")
    # Frame lines ("  File ...", code) are indented; message lines are not.
    return "\n".join(
        line if line.startswith(" ") else redact_values(line) for line in text.split("\n")
    )


def is_library(logger_name: str) -> bool:
    """Whether a logger belongs to a library whose messages may quote header values."""
    return any(logger_name == lib or logger_name.startswith(lib + ".") for lib in LIBRARIES)


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    if is_library(record.name):
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact_values(message), None
    elif isinstance(record.args, tuple):
        record.args = tuple(
            library_message(a) if isinstance(a, BaseException) else a for a in record.args
        )
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_traceback(record.exc_info[1])
    return record


class _RedactingFactory:
    """A log-record factory that redacts what :func:`_redact_record` covers."""

    def __init__(self, base: Callable[..., logging.LogRecord]) -> None:
        self.base = base

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact_record(self.base(*args, **kwargs))


def _logger_for(filename: str) -> str:
    """The dotted module a warning came from, as a logger name (``highdicom.base``)."""
    parts = PurePath(filename).with_suffix("").parts
    for anchor in ("site-packages", "dist-packages"):
        if anchor in parts:
            return ".".join(parts[parts.index(anchor) + 1 :])
    return "py.warnings"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    logging.getLogger(_logger_for(filename)).warning("%s: %s", category.__name__, message)


def route_library_warnings() -> None:
    """Route warnings through logging with values withheld (idempotent; entry points call it).

    Every record is redacted where it is created, so each handler (the CLI's stderr, uvicorn's,
    a test's capture) sees the same withheld text.
    """
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(factory))
    # pydicom logs every warning it issues (pydicom.misc.warn_and_log): the log line suffices.
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")
    warnings.showwarning = _show_warning
    # pydicom pins its logger at WARNING; let it follow the level the user chose (-q, -v).
    logging.getLogger("pydicom").setLevel(logging.NOTSET)


class OncePerMessage(logging.Filter):
    """Pass each distinct message of the libraries' loggers once.

    pydicom logs a value-length warning for every file of a series whose source header breaks
    a VR limit (a 300-slice CT gives 300 identical lines); once says the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a library message that was already passed."""
        if not is_library(record.name):
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
