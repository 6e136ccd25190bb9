"""STOW-RS refuses the one hostile part, keeps the others, and says why (issue 17: items 1, 3,
11, 13; issue 19: item 5). Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from bench.hostile_dicom import (
    INVALID_UIDS,
    INVALID_VALUES,
    deflate_bomb,
    giant_rle,
    with_raw_value,
    with_values,
)
from service.auth.tokens import Role
from service.config import Settings
from service.db.models import Instance
from service.dicomweb.multipart import write_related
from tests.service.api.conftest import Api, api_settings
from tests.service.jobs.support import postgres_schema, write_ct_study

REFERENCED, FAILED = "00081199", "00081198"
SOP_UID, REASON, COMMENT, URL = "00081155", "00081197", "00000902", "00081190"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    # A 64 MiB decoded-size limit keeps the bombs below small and fast to build.
    limit = {"max_decoded_instance_bytes": 64 * 1024**2, "max_upload_bytes": 20_000_000}
    if request.param == "sqlite":
        yield api_settings(tmp_path, **limit)
        return
    with postgres_schema() as url:
        yield api_settings(tmp_path, database_url=url, **limit)


@pytest.fixture
def ct(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in write_ct_study(tmp_path / "ct", seed="victim")]


def _stow(api: Api, parts: list[bytes]) -> tuple[int, dict[str, Any], str]:
    body, content_type = write_related(parts, "application/dicom")
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    response = api.client.post("/dicomweb/studies", content=body, headers=headers)
    return response.status_code, response.json(), response.headers.get("warning", "")


def _uid(data: bytes, keyword: str = "SOPInstanceUID") -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).get(keyword))


def _failures(body: dict[str, Any]) -> list[tuple[int, str]]:
    return [(f[REASON]["Value"][0], f[COMMENT]["Value"][0]) for f in body[FAILED]["Value"]]


def _new_study(data: bytes, number: int) -> bytes:
    """``data`` as an instance of another study (new UIDs, same patient)."""
    return with_values(
        data,
        StudyInstanceUID=f"1.2.826.0.1.77.{number}",
        SeriesInstanceUID=f"1.2.826.0.1.77.{number}.1",
        SOPInstanceUID=f"1.2.826.0.1.77.{number}.1.1",
    )


def test_sop_uid_of_another_patients_study_is_refused_and_the_rest_kept(
    api: Api, ct: list[bytes]
) -> None:
    assert _stow(api, ct)[0] == 200
    victim_uid = _uid(ct[0])
    forged = with_values(ct[0], StudyInstanceUID="1.2.826.0.1.66.1", PatientID="ATTACKER")
    good = _new_study(ct[1], 1)
    code, body, warning = _stow(api, [forged, good])
    assert code == 202
    ((failed_item),) = body[FAILED]["Value"]
    assert failed_item[SOP_UID]["Value"] == [victim_uid]
    reason, text = _failures(body)[0]
    assert reason == 0xC000 and "another study" in text and "ATTACKER" not in text
    assert "1 of 2 instances refused" in warning and "another study" in warning
    assert [r[SOP_UID]["Value"][0] for r in body[REFERENCED]["Value"]] == [_uid(good)]
    with api.state.factory() as session:
        row = session.get(Instance, victim_uid)
        assert row is not None and row.study_instance_uid == _uid(ct[0], "StudyInstanceUID")
        assert session.query(Instance).count() == len(ct) + 1


def test_blank_uids_are_refused_with_a_reason_in_the_answer_and_the_log(
    api: Api, ct: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    blank = [with_values(d, StudyInstanceUID="", SeriesInstanceUID="") for d in ct]
    with caplog.at_level(logging.WARNING):
        code, body, warning = _stow(api, blank)
    assert code == 409
    failures = _failures(body)
    assert len(failures) == len(ct)
    assert all(
        r == 0xC000 and "lacks StudyInstanceUID, SeriesInstanceUID" in t for r, t in failures
    )
    assert warning.startswith('299 fedseg: "4 of 4 instances refused"')
    assert f"{len(ct)} x instance lacks StudyInstanceUID" in warning
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "lacks StudyInstanceUID" in logged and "0 stored, 4 refused" in logged


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_invalid_uids_are_refused_and_never_reach_a_url(
    api: Api, ct: list[bytes], keyword: str
) -> None:
    hostile = [with_raw_value(ct[0], keyword, uid) for uid in INVALID_UIDS]
    code, body, warning = _stow(api, [*hostile, ct[1]])
    assert code == 202, body
    failures = _failures(body)
    assert len(failures) == len(INVALID_UIDS)
    assert all(r == 0xC000 and f"{keyword} is not a valid UID" in t for r, t in failures)
    assert "../" not in str(body) and "\\u0000" not in str(body)
    ((stored),) = body[REFERENCED]["Value"]
    assert "/studies/" in stored[URL]["Value"][0] and ".." not in stored[URL]["Value"][0]
    assert "not a valid UID" in warning
    with api.state.factory() as session:
        assert session.query(Instance).count() == 1


def test_values_the_database_cannot_hold_are_refused_without_a_server_error(
    api: Api, ct: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    hostile = [
        with_raw_value(_new_study(ct[0], n), keyword, value)
        for n, (keyword, value) in enumerate(INVALID_VALUES, start=10)
    ]
    with caplog.at_level(logging.DEBUG):
        code, body, _ = _stow(api, [*hostile, ct[1]])
    assert code == 202, body
    texts = [t for _, t in _failures(body)]
    assert len(texts) == len(INVALID_VALUES)
    for (keyword, _), text in zip(INVALID_VALUES, texts, strict=True):
        assert text.startswith(keyword), text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "[parameters" not in logged and "PPPP" not in logged and "Jane" not in logged
    assert "MMMM" not in str(body) and "PPPP" not in str(body)


def test_decompression_bombs_are_refused(api: Api, ct: list[bytes]) -> None:
    # Header says 16 x 12 pixels; the deflated data set inflates to 256 MiB (limit: 64 MiB).
    bomb = deflate_bomb(_new_study(ct[0], 20), 256 * 1024**2)
    giant = giant_rle(_new_study(ct[0], 21))
    assert len(bomb) < 300_000 and len(giant) < 4_000
    code, body, warning = _stow(api, [bomb, giant, ct[1]])
    assert code == 202, body
    bomb_text, giant_text = (t for _, t in _failures(body))
    assert "inflates to more than the 67108864-byte limit" in bomb_text
    assert "8589672450 bytes decoded" in giant_text and "Rows 65535" in giant_text
    assert "FEDSEG_MAX_DECODED_INSTANCE_BYTES" in warning
    with api.state.factory() as session:
        assert session.query(Instance).count() == 1
