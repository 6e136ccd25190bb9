"""Orthanc (Debian, with DICOMweb) pushes a study by STOW-RS and C-STORE, dcmtk storescu sends
one directly; the real pipeline (threshold bundle) returns SEG, RTSTRUCT and SR to Orthanc."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from service.api.main import create_app
from service.auth.tokens import Role, create_token
from service.config import Destination, Settings
from service.server import scp_service, segment_service
from tests.dciodvfy import assert_valid
from tests.dcmtk import dcmtk
from tests.requirements import missing
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import install_ct_threshold, write_ct_study

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
RESULT_MODALITIES = ("SEG", "RTSTRUCT", "SR")


def _found(orthanc_url: str, modality: str) -> list[str]:
    return list(
        httpx.post(
            f"{orthanc_url}/tools/find",
            json={"Level": "Instance", "Query": {"Modality": modality}},
            timeout=10,
        ).json()
    )


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[dict[str, int]]:
    exe = shutil.which("Orthanc")
    if exe is None or not PLUGIN.exists():
        missing("Orthanc with its DICOMweb plugin is not installed (Debian: orthanc-dicomweb)")
    ports = {
        "http": free_port(),
        "dicom": free_port(),
        "fedseg_http": free_port(),
        "fedseg_dicom": free_port(),
    }
    config = {
        "Name": "fedseg-test",
        "StorageDirectory": str(tmp_path / "orthanc"),
        "IndexDirectory": str(tmp_path / "orthanc"),
        "HttpPort": ports["http"],
        "DicomPort": ports["dicom"],
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(PLUGIN)],
        "DicomModalities": {"fedseg": ["FEDSEG", "127.0.0.1", ports["fedseg_dicom"]]},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {}},
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [exe, str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(ports["http"])
        yield ports
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_studies_from_orthanc_and_storescu_return_seg_rtstruct_sr(
    orthanc: dict[str, int], tmp_path: Path
) -> None:
    orthanc_url = f"http://127.0.0.1:{orthanc['http']}"
    settings = Settings(
        state_dir=tmp_path / "state",
        model_store=tmp_path / "m",
        shipped_models=tmp_path / "s",
        api_port=orthanc["fedseg_http"],
        dicom_port=orthanc["fedseg_dicom"],
        dicom_allowed_aes=["ORTHANC", "DCMTK"],
        quiet_period_s=0.5,
        worker_poll_s=0.2,
        destinations=[
            Destination(name="orthanc", kind="dimse", port=orthanc["dicom"], ae_title="ORTHANC")
        ],
    )
    install_ct_threshold(settings, tmp_path)
    app = create_app(settings, (segment_service(), scp_service))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(settings.api_port)
        state = app.state.server
        with state.factory() as session, session.begin():
            token, _ = create_token(session, "orthanc", Role.SENDER)
        fedseg_dicomweb = f"http://127.0.0.1:{settings.api_port}/dicomweb/"
        httpx.put(
            f"{orthanc_url}/dicom-web/servers/fedseg",
            json={"Url": fedseg_dicomweb, "HttpHeaders": {"Authorization": f"Bearer {token}"}},
            timeout=10,
        ).raise_for_status()
        studies = {}
        for seed in ("stow", "cstore"):
            for path in write_ct_study(tmp_path / seed, seed=seed, slices=6):
                httpx.post(
                    f"{orthanc_url}/instances", content=path.read_bytes(), timeout=10
                ).raise_for_status()
        for study_id in httpx.get(f"{orthanc_url}/studies", timeout=10).json():
            desc = httpx.get(f"{orthanc_url}/studies/{study_id}", timeout=10).json()
            studies[desc["MainDicomTags"]["StudyInstanceUID"]] = study_id
        ids = list(studies.values())
        stow = httpx.post(
            f"{orthanc_url}/dicom-web/servers/fedseg/stow", json={"Resources": [ids[0]]}, timeout=60
        )
        assert stow.status_code == 200, stow.text
        cstore = httpx.post(
            f"{orthanc_url}/modalities/fedseg/store", json={"Resources": [ids[1]]}, timeout=60
        )
        assert cstore.status_code == 200, cstore.text
        direct = write_ct_study(tmp_path / "storescu", seed="storescu", slices=6)
        storescu = subprocess.run(
            [
                *(dcmtk("storescu"), "-R", "-aet", "DCMTK", "-aec", "FEDSEG"),
                *("127.0.0.1", str(settings.dicom_port), *map(str, direct)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert storescu.returncode == 0, storescu.stderr
        deadline = time.monotonic() + 180
        found: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            found = {m: _found(orthanc_url, m) for m in RESULT_MODALITIES}
            if all(len(ids) == 3 for ids in found.values()):
                break
        counts = {m: len(ids) for m, ids in found.items()}
        assert counts == dict.fromkeys(RESULT_MODALITIES, 3), "each study's results come back"
        for modality, ids in found.items():
            for number, instance in enumerate(ids):
                out = tmp_path / f"back-{modality}-{number}.dcm"
                out.write_bytes(
                    httpx.get(f"{orthanc_url}/instances/{instance}/file", timeout=10).content
                )
                assert_valid(out)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
