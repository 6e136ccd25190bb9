"""QIDO-RS matching (#17 item 9): keyword and tag keys, wildcards, ranges, paging, includefield.

Studies are stored through the real ingest path from small generated headers; each search goes
through the HTTP API as a PACS client would send it.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from service.api.qido import Level, QueryError, parse
from service.auth.tokens import Role
from service.db.models import AuditEvent
from service.storage.ingest import ingest
from tests.service.api.conftest import Api

CT, SEG = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.66.4"
_STUDIES = {
    # name, patient ID, date, time, series: (modality, number, description, instances)
    "jane": ("Doe^Jane", "P-1", "20240110", "0930",
             [("CT", 1, "Chest", 3), ("SEG", 2, "Organs", 1)]),
    "john": ("Smith^John", "P-2", "20240215", "1415", [("PT", 1, "WB FDG", 2)]),
    "ann": ("Doe^Ann", "P-3", "20230705", "0800", [("MR", 4, "T1 axial", 2)]),
}  # fmt: skip


def _instance(study: str, series: str, modality: str, number: int, index: int,
              patient: tuple[str, str, str, str, str]) -> bytes:  # fmt: skip
    name, pid, date, time, description = patient
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SEG if modality == "SEG" else CT
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.StudyDate, ds.StudyTime = name, pid, date, time
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, number, index + 1
    ds.SeriesDescription, ds.AccessionNumber, ds.PatientSex = description, f"A{pid}", "F"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture
def uids(api: Api) -> dict[str, str]:
    """Store the three studies; returns study UID by short name (and series UIDs)."""
    out: dict[str, str] = {}
    with api.state.factory() as session, session.begin():
        for short, (name, pid, date, time, series_list) in _STUDIES.items():
            study = out[short] = generate_uid()
            for modality, number, description, count in series_list:
                series = out[f"{short}-{modality}"] = generate_uid()
                for index in range(count):
                    data = _instance(study, series, modality, number, index,
                                     (name, pid, date, time, description))  # fmt: skip
                    ingest(session, api.state.store, data, "test")
    return out


def _search(api: Api, path: str, **params: Any) -> tuple[int, list[dict[str, Any]], str]:
    response = api.client.get(path, params=params, headers=api.headers(Role.READER))
    body = response.json() if response.status_code == 200 else response.json()["detail"]
    return response.status_code, body, response.headers.get("warning", "")


def _values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r[tag]["Value"][0] if "Value" in r[tag] else None for r in results]


def _patients(results: list[dict[str, Any]]) -> list[str]:
    return sorted(_values(results, "00100020"))


def test_an_unknown_patient_matches_nothing(api: Api, uids: dict[str, str]) -> None:
    code, found, _ = _search(api, "/dicomweb/studies", PatientName="Nobody^Nonexistent")
    assert code == 200 and found == []


def test_tag_and_keyword_forms_match_alike(api: Api, uids: dict[str, str]) -> None:
    assert _patients(_search(api, "/dicomweb/studies", **{"00100020": "P-2"})[1]) == ["P-2"]
    assert _patients(_search(api, "/dicomweb/studies", PatientID="P-2")[1]) == ["P-2"]
    assert _patients(_search(api, "/dicomweb/studies", **{"00100020": "p-2"})[1]) == []


@pytest.mark.parametrize(
    ("params", "patients"),
    [
        ({"PatientName": "doe*"}, ["P-1", "P-3"]),  # PN: case-insensitive
        ({"PatientName": "D?e^J*"}, ["P-1"]),
        ({"PatientName": "*"}, ["P-1", "P-2", "P-3"]),
        ({"StudyDate": "20240201-20240301"}, ["P-2"]),
        ({"StudyDate": "-20240110"}, ["P-1", "P-3"]),
        ({"StudyDate": "20240110-"}, ["P-1", "P-2"]),
        ({"StudyDate": "20240110"}, ["P-1"]),
        ({"StudyTime": "09-10"}, ["P-1"]),
        ({"StudyTime": "1415"}, ["P-2"]),
        ({"ModalitiesInStudy": "SEG"}, ["P-1"]),
        ({"ModalitiesInStudy": "PT,MR"}, ["P-2", "P-3"]),
        ({"Modality": "MR"}, ["P-3"]),  # a series key at the study level: any series matches
        ({"SeriesDescription": "*FDG*"}, ["P-2"]),
        ({"AccessionNumber": "AP-?"}, ["P-1", "P-2", "P-3"]),
        ({"PatientID": "P-1", "StudyDate": "2023*"}, None),  # wildcard on a date: refused
    ],
)
def test_study_matching(
    api: Api, uids: dict[str, str], params: dict[str, str], patients: list[str] | None
) -> None:
    code, found, _ = _search(api, "/dicomweb/studies", **params)
    if patients is None:
        assert code == 400 and "StudyDate" in found
    else:
        assert code == 200 and _patients(found) == patients


def test_uid_lists(api: Api, uids: dict[str, str]) -> None:
    wanted = f"{uids['jane']},{uids['ann']}"
    assert _patients(_search(api, "/dicomweb/studies", StudyInstanceUID=wanted)[1]) == [
        "P-1",
        "P-3",
    ]


def test_limit_and_offset_page_newest_first(api: Api, uids: dict[str, str]) -> None:
    code, first, warning = _search(api, "/dicomweb/studies", limit="2")
    assert code == 200 and _values(first, "00100020") == ["P-2", "P-1"]
    assert "1 additional results" in warning
    _, rest, warning = _search(api, "/dicomweb/studies", limit="2", offset="2")
    assert _values(rest, "00100020") == ["P-3"] and warning == ""
    for bad in ({"limit": "0"}, {"limit": "-1"}, {"offset": "x"}):
        assert _search(api, "/dicomweb/studies", **bad)[0] == 400


def test_the_server_maximum_caps_a_page(api: Api, uids: dict[str, str]) -> None:
    api.state.settings.qido_max_results = 1
    code, found, warning = _search(api, "/dicomweb/studies", limit="50")
    assert code == 200 and len(found) == 1
    assert "exceeds the maximum of 1" in warning and "2 additional results" in warning


def test_fuzzymatching_is_literal_with_a_warning(api: Api, uids: dict[str, str]) -> None:
    code, found, warning = _search(
        api, "/dicomweb/studies", PatientName="Doe", fuzzymatching="true"
    )
    assert code == 200 and found == []
    assert warning.startswith("299 ") and "fuzzymatching parameter is not supported" in warning


def test_unsupported_keys_are_refused_not_ignored(api: Api, uids: dict[str, str]) -> None:
    code, detail, _ = _search(api, "/dicomweb/studies", OtherPatientIDs="P-9")
    assert code == 400 and "OtherPatientIDs (00101000) is not supported" in detail
    code, detail, _ = _search(api, "/dicomweb/studies", **{"00101010": "056Y"})
    assert code == 400 and "PatientAge" in detail
    code, detail, _ = _search(api, "/dicomweb/studies", frobnicate="1")
    assert code == 400 and "frobnicate" in detail
    code, detail, _ = _search(api, "/dicomweb/studies", StudyInstanceUID="1.2.*")
    assert code == 400 and "wildcards" in detail


def test_includefield_adds_attributes(api: Api, uids: dict[str, str]) -> None:
    path = f"/dicomweb/studies/{uids['jane']}/series"
    _, plain, _ = _search(api, path)
    assert all("00100040" not in s for s in plain)
    _, wider, _ = _search(api, path, includefield="PatientSex,00100020")
    assert _values(wider, "00100040") == ["F", "F"] and _values(wider, "00100020") == ["P-1"] * 2
    _, everything, _ = _search(api, path, includefield="all")
    assert "00100010" in everything[0] and "00080020" in everything[0]
    assert _search(api, path, includefield="PatientAge")[0] == 400


def test_series_and_instance_searches(api: Api, uids: dict[str, str]) -> None:
    study = uids["jane"]
    _, series, _ = _search(api, f"/dicomweb/studies/{study}/series", Modality="SEG")
    assert _values(series, "0020000E") == [uids["jane-SEG"]]
    assert _values(series, "00201209") == [1]
    _, both, _ = _search(api, f"/dicomweb/studies/{study}/series", Modality="CT\\SEG")
    assert _values(both, "00200011") == [1, 2]
    code, detail, _ = _search(api, f"/dicomweb/studies/{study}/series", StudyInstanceUID=study)
    assert code == 400 and "more than once" in detail
    _, everywhere, _ = _search(api, "/dicomweb/series", SeriesNumber="1")
    assert sorted(_values(everywhere, "00080060")) == ["CT", "PT"]
    ct = uids["jane-CT"]
    _, instances, _ = _search(api, f"/dicomweb/studies/{study}/series/{ct}/instances")
    assert _values(instances, "00200013") == [1, 2, 3]
    one = instances[1]["00080018"]["Value"][0]
    _, found, _ = _search(api, f"/dicomweb/studies/{study}/instances", SOPInstanceUID=one)
    assert _values(found, "00080018") == [one]
    assert found[0]["00081190"]["Value"][0].endswith(f"/series/{ct}/instances/{one}")
    _, across, _ = _search(api, "/dicomweb/instances", PatientID="P-2")
    assert len(across) == 2


def test_searches_are_audited_with_their_counts(api: Api, uids: dict[str, str]) -> None:
    _search(api, "/dicomweb/studies", PatientName="Doe*")
    with api.state.factory() as session:
        (event,) = session.query(AuditEvent).filter_by(action="qido-rs studies").all()
    assert event.detail == "2 studies" and event.actor == "test-reader"


def test_parse_refuses_malformed_ranges() -> None:
    with pytest.raises(QueryError, match="StudyDate '2024-01-10'"):
        parse([("StudyDate", "2024-01-10")], Level.STUDY, 100)
    query = parse([("StudyTime", "0930-1000"), ("limit", "5")], Level.STUDY, 100)
    assert query.limit == 5 and query.criteria[0].matches("093000.5")
    # An upper bound of 1000 is the whole minute 10:00 (inclusive); 10:01 is outside.
    assert query.criteria[0].matches("100059") and not query.criteria[0].matches("100100")
