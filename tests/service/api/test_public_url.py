"""Every URL the server hands out starts with the configured public URL, whatever the Host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.auth.tokens import Role
from service.config import Settings
from service.dicomweb.multipart import write_related
from tests.service.api.conftest import Api, api_settings
from tests.service.jobs.support import write_ct_study

PUBLIC = "https://fedseg.hospital.example:8443/imaging"
FORGED = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path, public_url=PUBLIC + "/")


def _urls(value: Any) -> list[str]:
    """Every RetrieveURL and BulkDataURI in a DICOM JSON document, at any depth."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("BulkDataURI", "RetrieveURL") and isinstance(item, str):
                found.append(item)
            elif key == "00081190" and isinstance(item, dict):
                found += item.get("Value", [])
            else:
                found += _urls(item)
    elif isinstance(value, list):
        for item in value:
            found += _urls(item)
    return found


def test_forged_host_never_reaches_a_url(api: Api, tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    body, content_type = write_related([f.read_bytes() for f in files], "application/dicom")
    sender = api.headers(Role.SENDER) | FORGED | {"Content-Type": content_type}
    stored = api.client.post("/dicomweb/studies", content=body, headers=sender)
    assert stored.status_code == 200
    study = stored.json()["00081199"]["Value"][0]["00081190"]["Value"][0].split("/")[-5]

    reader = api.headers(Role.READER) | FORGED
    series = api.client.get("/dicomweb/series", headers=reader).json()
    series_uid = series[0]["0020000E"]["Value"][0]
    answers = [
        stored.json(),
        api.client.get("/dicomweb/studies", headers=reader).json(),
        series,
        api.client.get(f"/dicomweb/studies/{study}/instances", headers=reader).json(),
        api.client.get(
            f"/dicomweb/studies/{study}/series/{series_uid}/metadata", headers=reader
        ).json(),
    ]
    urls = [url for answer in answers for url in _urls(answer)]
    assert len(urls) >= 2 * len(files) + 2  # stored, studies, series, instances, bulk data
    wrong = [u for u in urls if not u.startswith(f"{PUBLIC}/dicomweb/studies/{study}")]
    assert not wrong, wrong
    assert "attacker" not in json.dumps(answers)


def test_without_a_public_url_the_api_address_is_used(tmp_path: Path) -> None:
    assert api_settings(tmp_path).resolved_public_url() == "http://127.0.0.1:8042"
    wildcard = Settings(api_host="0.0.0.0", api_port=443, tls_certfile=tmp_path / "c.pem")
    assert wildcard.resolved_public_url() == "https://127.0.0.1:443"
    assert Settings(api_host="::", api_port=80).resolved_public_url() == "http://[::1]:80"
    assert Settings(public_url="http://pacs:8042/").resolved_public_url() == "http://pacs:8042"


@pytest.mark.parametrize(
    "url",
    ["fedseg.example", "ftp://fedseg.example", "https://", "https://u:p@fedseg.example",
     "https://fedseg.example/?next=x", "https://fedseg.example/#top"],
)  # fmt: skip
def test_a_public_url_must_be_plain_http(url: str) -> None:
    with pytest.raises(ValueError, match="FEDSEG_PUBLIC_URL"):
        Settings(public_url=url)
