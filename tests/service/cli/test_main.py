"""The ``fedseg`` entry point: library warnings once, quiet under -q, no patient values."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

# STS_003's PET has StudyID 'IBSI_1_STS_003_PET' (18 characters; SH allows 16) in every file.
_STS_003 = Path("sts-pet/ibsi_validation/dicom/STS_003/PET/image")
_LENGTH_WARNING = "exceeds the maximum length of 16 allowed for VR SH"


def _fedseg(*args: str) -> subprocess.CompletedProcess[str]:
    entry = "from service.cli.main import main; raise SystemExit(main())"
    return subprocess.run(
        [sys.executable, "-c", entry, *args], capture_output=True, text=True, timeout=300
    )


def test_a_series_with_a_long_header_value_warns_once(data_root: Path) -> None:
    series = data_root / _STS_003
    assert len(list(series.glob("*.dcm"))) > 10
    done = _fedseg("inspect", str(series))
    assert done.returncode == 0, done.stderr
    # Once in all of stderr: pydicom logs and also warns each value; only the log line shows.
    assert done.stderr.count(_LENGTH_WARNING) == 1, done.stderr
    assert "UserWarning" not in done.stderr
    quiet = _fedseg("-q", "inspect", str(series))
    assert quiet.returncode == 0 and quiet.stderr == ""


# Invalid patient values that pydicom and highdicom quote in their warnings and errors.
_PATIENT = {
    "PatientName": ("PN", "Quokkafield"),  # one word: highdicom's person-name warning
    "PatientID": ("LO", "PHI-7731-QX"),
    "PatientBirthDate": ("DA", "1956-03-14"),  # not DICOM's DA format
    "PatientSex": ("CS", "Malefemale"),
    "PatientAge": ("AS", "56 years"),
}


@pytest.fixture(scope="module")
def invalid_patient_series(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("invalid-patient")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each invalid value it is given
        for path in sorted((data_root / _STS_003).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            for keyword, (vr, value) in _PATIENT.items():
                ds.add_new(keyword, vr, value)
            ds.save_as(out / path.name)
    return out


def test_segment_output_quotes_no_patient_value(
    invalid_patient_series: Path, tmp_path: Path
) -> None:
    done = _fedseg("segment", str(invalid_patient_series), "--out", str(tmp_path), "--model",
                   "pet-lesion")  # fmt: skip
    output = done.stdout + done.stderr
    for _, value in _PATIENT.values():
        assert value not in output, f"{value!r} printed:\n{output}"
    assert output.count("unlikely to represent the intended person name") == 1
    assert "UserWarning" in output  # highdicom's warning went through logging, redacted


def test_errors_do_not_end_with_pydicom_advice(tmp_path: Path) -> None:
    path = tmp_path / "report.txt"
    path.write_text("not DICOM")
    done = _fedseg("inspect", str(path))
    assert done.returncode != 0
    assert "report.txt: not a DICOM file" in done.stderr
    assert "force" not in done.stderr
