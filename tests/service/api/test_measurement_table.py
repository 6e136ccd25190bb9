"""The plain-text measurement table that ``make demo`` and the API client print."""

from __future__ import annotations

from service.api.client import format_measurements


def test_each_row_names_its_model_and_pet_rows_carry_suvmax() -> None:
    reports = [
        {
            "algorithm": "fedseg-ct-organs 0.1.0",
            "modality": "CT",
            "segments": [{"name": "liver", "volume_ml": 1696.5, "intensity": {"mean": 113.31}}],
        },
        {
            "algorithm": "nnunet-phantom 1.0.0",
            "modality": "CT",
            "segments": [{"name": "liver", "volume_ml": 1900.43, "intensity": {"mean": 130.7}}],
        },
        {
            "algorithm": "fedseg-pet-lesion 0.2.0",
            "modality": "PT",
            "segments": [
                {
                    "name": "lesion",
                    "volume_ml": 103.5,
                    "intensity": {"mean": 4.85},
                    "pet": {"suv_max": 10.27},
                }
            ],
        },
    ]
    lines = format_measurements(reports).splitlines()
    assert lines[0].split()[:3] == ["model", "modality", "segment"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("fedseg-ct-organs", "CT", "liver"),
        ("nnunet-phantom", "CT", "liver"),
        ("fedseg-pet-lesion", "PT", "lesion"),
    ]
    assert rows[0][-1] == "-" and rows[2][-1] == "10.27"
    assert rows[1][4] == "1900.43"
