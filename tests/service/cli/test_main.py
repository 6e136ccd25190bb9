"""The ``fedseg`` entry point: logging set-up."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from service.cli.main import OncePerMessage

# STS_003's PET has StudyID 'IBSI_1_STS_003_PET' (18 characters; SH allows 16) in every file.
_STS_003 = Path("sts-pet/ibsi_validation/dicom/STS_003/PET/image")
_LENGTH_WARNING = "exceeds the maximum length of 16 allowed for VR SH"


def _record(name: str, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)


def test_once_per_message_passes_each_library_message_once() -> None:
    once = OncePerMessage("pydicom")
    assert once.filter(_record("pydicom", "a"))
    assert not once.filter(_record("pydicom", "a"))
    assert once.filter(_record("pydicom", "b"))
    assert once.filter(_record("pydicom.valuerep", "a"))
    assert not once.filter(_record("pydicom.valuerep", "a"))
    # Other loggers are never held back, nor is a logger that only shares the prefix.
    assert once.filter(_record("service.dicom", "a")) and once.filter(_record("service.dicom", "a"))
    assert once.filter(_record("pydicomx", "a")) and once.filter(_record("pydicomx", "a"))


def test_a_series_with_a_long_header_value_warns_once(data_root: Path) -> None:
    series = data_root / _STS_003
    files = list(series.glob("*.dcm"))
    assert len(files) > 10
    entry = "from service.cli.main import main; raise SystemExit(main())"
    done = subprocess.run(
        [sys.executable, "-c", entry, "inspect", str(series)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if line.startswith("WARNING pydicom")]
    assert len([line for line in logged if _LENGTH_WARNING in line]) == 1
