import json
from collections.abc import Iterator

import pytest

from service.errors import ConfigurationError
from service.labels import get_table
from service.labels.roi_names import (
    IGNORE,
    SYNONYMS_FILE,
    MatchStatus,
    RoiNameMapper,
    SynonymTable,
)

DATA = json.loads(SYNONYMS_FILE.read_text())
TABLE = SynonymTable.load()
SEPARATORS = ("_", " ", "-", ".", "__")
SIDE_WORDS = {side: spelled for side, spelled in DATA["laterality"].items()}


def spellings(parts: list[str]) -> Iterator[str]:
    """The parts joined with every separator in every case, and in camelCase.

    A one-letter word first has no camelCase form: "LKidney" cannot be told from an acronym.
    """
    for separator in SEPARATORS:
        joined = separator.join(parts)
        yield from (
            joined,
            joined.upper(),
            joined.lower(),
            separator.join(p.title() for p in parts),
        )
    if len(parts[0]) > 1:
        yield "".join(p.title().replace(" ", "") for p in parts)


def with_side(synonym: str, side_word: str) -> Iterator[str]:
    words = synonym.split()
    yield from spellings([*words, side_word])
    yield from spellings([side_word, *words])


@pytest.mark.parametrize("item", DATA["structures"], ids=lambda i: i["tg263"])
def test_every_synonym_maps_to_its_tg263_name(item: dict) -> None:
    base = item["tg263"]
    for synonym in item["synonyms"]:
        if not item.get("lateral"):
            for spelled in spellings(synonym.split()):
                assert TABLE.standard_name(spelled).tg263 == base, spelled
            continue
        for side, side_words in SIDE_WORDS.items():
            other = "R" if side == "L" else "L"
            for side_word in side_words:
                for spelled in with_side(synonym, side_word):
                    found = TABLE.standard_name(spelled)
                    assert found.tg263 == f"{base}_{side}", (spelled, found)
                    assert found.tg263 != f"{base}_{other}"
        # No side is ambiguous, never a guess.
        for spelled in spellings(synonym.split()):
            found = TABLE.standard_name(spelled)
            assert found.tg263 is None and set(found.candidates) == {f"{base}_L", f"{base}_R"}
    for synonym in item.get("combined_synonyms", []):
        for spelled in spellings(synonym.split()):
            assert TABLE.standard_name(spelled).tg263 == item["combined"], spelled


@pytest.mark.parametrize(
    ("name", "tg263"),
    [
        ("Lung_L", "Lung_L"),
        ("LUNG LT", "Lung_L"),
        ("L Lung", "Lung_L"),
        ("Lung-Left", "Lung_L"),
        ("Lung (Left)", "Lung_L"),
        ("Rt Lung", "Lung_R"),
        ("KIDNEY_RT", "Kidney_R"),
        ("Spinal-Cord", "SpinalCord"),
        ("Lungs", "Lungs"),
        ("Lung_Total", "Lungs"),
        ("Kidneys bilat", "Kidneys"),
        ("GTV_Mass_PET", "GTV"),
        ("GTVp", "GTV"),
        ("BODY", "External"),
        ("Liver_CT", "Liver"),
    ],
)
def test_common_clinical_spellings(name: str, tg263: str) -> None:
    assert TABLE.standard_name(name).tg263 == tg263


@pytest.mark.parametrize(
    "name",
    [
        "Lung_L_PRV05",  # a planning margin is not the organ
        "SpinalCord_PRV",
        "zLung_L",  # TG-263 helper prefix
        "_Liver",
        "GTV_Edema",
        "GTV+5mm",
        "Lung_L-PTV",
        "Liver_L",  # a side on an unpaired organ
        "Lungs_L",
        "Kidney_L_R",  # both sides
        "Liver2",
        "ROI-1",
        "",
        "---",
    ],
)
def test_doubtful_names_are_not_recognised(name: str) -> None:
    assert TABLE.standard_name(name).tg263 is None


@pytest.mark.parametrize(
    ("name", "tg263"),
    [
        # Spellings a planning system produces, with the TG-263 name they stand for.
        ("Lt Lung", "Lung_L"),
        ("LUNG_LEFT", "Lung_L"),
        ("Lung Lt.", "Lung_L"),
        ("Lung_L ", "Lung_L"),  # trailing space
        ("Lung\u2013L", "Lung_L"),  # en dash
        ("Lung\u2014Right", "Lung_R"),  # em dash
        ("Kidney Lt", "Kidney_L"),
        ("Pulmo sx", "Lung_L"),  # Italian sinistra, as "dx" is destra
        ("Kidneys", "Kidneys"),
        ("Cord", "SpinalCord"),
        ("External", "External"),
        # TG-263 names structures of their own: never the organ they resemble.
        ("Skin", "Skin"),  # a rind under the surface, not the body outline
        ("Bowel_Bag", "Bag_Bowel"),  # the peritoneal space, not the bowel loops
        ("Bag_Bowel", "Bag_Bowel"),
        # Names that must stay unrecognised (reported), not guessed.
        ("SC", None),  # spinal cord, or supraclavicular nodes in breast plans
        ("Femur_L", None),  # the whole femur is not Femur_Head_L
        ("Femoral_R", None),
        ("Liver-PRV", None),
        ("SpinalCord_PRV05", None),
        ("Lungs-GTV", None),
        ("Lung_L_1", None),
    ],
)
def test_planning_system_spellings(name: str, tg263: str | None) -> None:
    assert TABLE.standard_name(name).tg263 == tg263


def test_skin_is_not_the_body_outline() -> None:
    mapper = RoiNameMapper(get_table("body"), synonyms=TABLE)
    assert mapper.match("BODY").label is not None
    skin = mapper.match("Skin")
    assert skin.label is None and skin.status is MatchStatus.UNMAPPED and skin.tg263 == "Skin"
    assert RoiNameMapper(get_table("ct-organs"), synonyms=TABLE).match("SC").label is None


def test_mapper_maps_labels_and_reports_the_rest() -> None:
    mapper = RoiNameMapper(get_table("ct-organs"), synonyms=TABLE)
    assert mapper.match("LUNG RT").label == "lung_right"
    assert mapper.match("L Kidney").label == "kidney_left"
    assert mapper.match("kidney_left").reason == "label name"
    kidney = mapper.match("Kidney")
    assert kidney.status is MatchStatus.AMBIGUOUS
    assert kidney.candidates == ("kidney_left", "kidney_right")
    body = mapper.match("BODY")
    assert body.status is MatchStatus.UNMAPPED and body.tg263 == "External"
    assert "not a label of ct-organs" in body.reason
    assert mapper.match("Kidney_L_R").status is MatchStatus.AMBIGUOUS


def test_every_shipped_label_is_found_by_its_tg263_name() -> None:
    for task in ("ct-organs", "pet-lesion", "mr-tumour", "body"):
        table = get_table(task)
        mapper = RoiNameMapper(table, synonyms=TABLE)
        for entry in table.labels:
            assert entry.tg263_name is not None
            assert mapper.match(entry.tg263_name).label == entry.name


def test_mapping_file_overrides_and_ignores() -> None:
    overrides = {"Kidney": "kidney_right", "BODY": IGNORE, "Nier li": "Kidney_L", "Lung_L": None}
    mapper = RoiNameMapper(get_table("ct-organs"), overrides, TABLE)
    assert mapper.match("Kidney").label == "kidney_right"
    assert mapper.match("Kidney").reason == "mapping file"
    assert mapper.match(" Nier li ").label == "kidney_left"  # TG-263 names are accepted
    assert mapper.match("BODY").status is MatchStatus.IGNORED
    assert mapper.match("Lung_L").label == "lung_left"  # null: the automatic rule


def test_mapping_file_with_an_unknown_label_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"'Kidney': 'kidney' is not a label of ct-organs"):
        RoiNameMapper(get_table("ct-organs"), {"Kidney": "kidney"}, TABLE)


def test_a_spelling_listed_for_two_structures_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(SYNONYMS_FILE.read_text())
    data["structures"][0]["synonyms"].append("Spinal_Cord")
    path = tmp_path / "synonyms.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ConfigurationError, match="SpinalCord: spelling 'spinal cord' is already one of Liver"
    ):
        SynonymTable.load(path)
