"""``fedseg suv``: factors, times and warnings per PET volume; errors name the tag."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from service.cli.main import main

pytestmark = pytest.mark.data


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["suv", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_suv_json_reports_factor_times_units_warnings(capsys, data_dir) -> None:
    code, result = run_json(capsys, str(data_dir("suv-dro/DRO/DRO_3_0/PT")))
    assert code == 0
    (volume,) = result["volumes"]
    expected = 70000 / (368.08e6 * 2 ** (-3600 / 6586.2))
    assert volume["factor"] == pytest.approx(expected, rel=1e-12)
    assert volume["suv_type"] == "bw"
    assert volume["units"] == "BQML"
    assert volume["decay_correction"] == "START"
    assert volume["injection_datetime"] == "2025-01-01T10:00:00"
    assert volume["scan_datetime"] == "2025-01-01T11:00:00"
    assert volume["scan_time_source"] == "SeriesDate/SeriesTime"
    assert any("MBq" in w for w in volume["warnings"])
    assert volume["error"] is None


def test_suv_type_option(capsys, data_dir) -> None:
    code, result = run_json(capsys, str(data_dir("suv-dro/DRO/DRO_2_0/PT")), "--suv-type", "bsa")
    assert code == 0
    (volume,) = result["volumes"]
    assert volume["units"] == "GML"
    bsa_cm2 = 0.007184 * 70**0.425 * 175**0.725 * 1e4
    assert volume["factor"] == pytest.approx(bsa_cm2 / 70000, rel=1e-12)
    assert volume["suv_unit"] == "cm2/mL"


def test_missing_weight_is_reported_by_tag(capsys, data_dir, tmp_path: Path) -> None:
    for source in sorted(data_dir("suv-dro/DRO/DRO_0_0/PT").glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(source)
        del ds.PatientWeight
        ds.save_as(tmp_path / source.name)
    code, result = run_json(capsys, str(tmp_path))
    assert code == 4
    (volume,) = result["volumes"]
    assert "PatientWeight (0010,1030)" in volume["error"]


def test_text_output(capsys, data_dir) -> None:
    assert main(["suv", str(data_dir("suv-dro/DRO/DRO_3_1/PT"))]) == 0
    out = capsys.readouterr().out
    assert "decay correction ADMIN" in out
    assert "SUVbw (g/mL) = value × " in out


def test_no_pet_is_an_input_error(capsys, data_dir) -> None:
    code = main(
        ["suv", str(data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image"))]
    )
    assert code == 3
    assert "no PET volume" in capsys.readouterr().err
