import json
from pathlib import Path

import pytest
from pydicom.sr._snomed_dict import mapping as snomed

from service.errors import ConfigurationError
from service.labels import RoiInterpretedType, Task, get_table, load_table

CANONICAL = {
    "ct-organs": [
        "liver",
        "spleen",
        "kidney_left",
        "kidney_right",
        "pancreas",
        "spinal_cord",
        "lung_left",
        "lung_right",
    ],
    "pet-lesion": ["lesion"],
    "mr-tumour": ["tumour"],
    "body": ["body"],
}


@pytest.mark.parametrize("task", list(CANONICAL))
def test_tables_hold_the_canonical_names_in_number_order(task: str) -> None:
    table = get_table(task)
    assert table.names == CANONICAL[task]
    assert [e.number for e in sorted(table.labels, key=lambda e: e.number)] == list(
        range(1, len(CANONICAL[task]) + 1)
    )


@pytest.mark.parametrize("task", [t.value for t in Task])
def test_every_code_is_a_snomed_concept_known_to_pydicom(task: str) -> None:
    sct = snomed["SCT"]
    for entry in get_table(task).labels:
        for term in (entry.category, entry.type, entry.laterality):
            if term is not None:
                assert term.scheme == "SCT"
                assert term.code in sct, f"{entry.name}: {term.code} not a known SCT code"


def test_codes_match_the_standard_meanings() -> None:
    ct = get_table("ct-organs")
    assert ct.by_name("liver").type.code == "10200004"
    assert ct.by_name("kidney_left").type.code == "64033007"
    assert ct.by_name("kidney_left").laterality.code == "7771000"  # type: ignore[union-attr]
    assert ct.by_name("kidney_right").laterality.code == "24028007"  # type: ignore[union-attr]
    assert get_table("pet-lesion").by_number(1).category.code == "49755003"
    assert get_table("body").by_name("body").rt_roi_interpreted_type is RoiInterpretedType.EXTERNAL


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="ct-organs"):
        get_table("brain")


def test_invalid_table_is_refused_with_its_path(tmp_path: Path) -> None:
    data = json.loads(
        (Path(__file__).parents[3] / "service/labels/tables/pet-lesion.json").read_text()
    )
    data["labels"].append(dict(data["labels"][0]))  # duplicate number and name
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=r"bad\.json"):
        load_table(path)
    data["labels"] = [dict(data["labels"][0], color=[300, 0, 0])]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match="RGB"):
        load_table(path)


@pytest.mark.parametrize("task", [t.value for t in Task])
def test_every_shipped_label_has_a_tg263_name(task: str) -> None:
    for entry in get_table(task).labels:
        assert entry.tg263_name, f"{task}/{entry.name} has no TG-263 name"
    ct = get_table("ct-organs")
    assert ct.by_name("kidney_left").tg263_name == "Kidney_L"
    assert ct.by_name("lung_right").tg263_name == "Lung_R"
    assert get_table("body").by_name("body").tg263_name == "External"


@pytest.mark.parametrize("bad", ["Left Lung", "1Lung", "Lung-L", "A_name_longer_than_16"])
def test_a_name_that_breaks_tg263_is_refused(tmp_path: Path, bad: str) -> None:
    data = json.loads(
        (Path(__file__).parents[3] / "service/labels/tables/pet-lesion.json").read_text()
    )
    data["labels"][0]["tg263_name"] = bad
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match="TG-263"):
        load_table(path)
