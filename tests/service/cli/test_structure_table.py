"""The per-structure summary of ``fedseg segment``: units, PET measures, QC once present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import structure_table
from service.cli.segment_cmd import _print_summary
from service.segment import STAGES, SeriesResult, StudyResult


def _pet(qc: object = None) -> dict[str, object]:
    segment: dict[str, object] = {
        "segment_number": 1,
        "name": "lesion",
        "volume_ml": 103.46883,
        "intensity": {"unit": "SUV", "mean": 4.8515, "max": 10.2653},
        "pet": {"suv_type": "bw", "suv_max": 10.2653, "mtv_ml": 103.4688, "tlg": 501.98,
                "lesion_count": 1},
    }  # fmt: skip
    if qc is not None:
        segment["qc"] = qc
    return {"modality": "PT", "segments": [segment]}


def test_pet_row_has_units_and_one_suvmax() -> None:
    header, row = structure_table.rows(_pet())
    assert header == ["STRUCTURE", "VOLUME (mL)", "MEAN (SUVbw)", "MAX (SUVbw)", "MTV (mL)",
                      "TLG (g)", "LESIONS"]  # fmt: skip
    assert row == ["lesion", "103.5", "4.85", "10.27", "103.5", "502.0", "1"]


def test_ct_rows_are_in_hu_without_pet_columns() -> None:
    measurements = {
        "modality": "CT",
        "segments": [
            {"name": "liver", "volume_ml": 1510.27, "intensity": {"unit": "HU", "mean": 61.04}},
            {"name": "spleen", "volume_ml": 180.0, "intensity": {"unit": "HU", "mean": 48.0}},
        ],
    }
    table = structure_table.rows(measurements)
    assert table[0] == ["STRUCTURE", "VOLUME (mL)", "MEAN (HU)"]
    assert table[1] == ["liver", "1510.3", "61.0"]


@pytest.mark.parametrize(
    ("qc", "shown"),
    [
        ({"status": "ok", "flags": []}, "ok"),
        ({"flags": ["volume outside prior", "touches edge"]}, "volume outside prior, touches edge"),
        (["outside field of view"], "outside field of view"),
    ],
)
def test_qc_column_appears_with_qc_data(qc: object, shown: str) -> None:
    header, row = structure_table.rows(_pet(qc))
    assert header[-1] == "QC" and row[-1] == shown


def test_segment_summary_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(_pet()))
    series = SeriesResult("1.2.3", "PT", "pet-lesion", "fedseg-pet-lesion", "0.2.0",
                          provider="CPUExecutionProvider", present=["lesion"],
                          outputs={"measurements": str(path)})  # fmt: skip
    _print_summary(StudyResult([series], dict.fromkeys(STAGES, 0.5)))
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["STRUCTURE", "VOLUME", "(mL)", "MEAN"]
    assert lines[2].split() == ["lesion", "103.5", "4.85", "10.27", "103.5", "502.0", "1"]
