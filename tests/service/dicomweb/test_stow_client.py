"""The one STOW-RS client against a real fedseg API over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from service.api.client import ServiceClient
from service.auth.tokens import Role
from service.db.models import Instance
from service.dicomweb.stow_client import StowClient, StowError
from tests.service.api.conftest import api_settings
from tests.service.jobs.support import write_ct_study
from tests.service.live_api import live_api


def test_store_sends_every_file_and_refusals_raise(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    with live_api(api_settings(tmp_path)) as api:
        sender = api.tokens[Role.SENDER]
        StowClient(f"{api.url}/dicomweb/", sender).store(files)
        with api.state.factory() as session:
            stored = session.scalars(select(Instance.sop_instance_uid)).all()
        assert len(stored) == len(files)

        with pytest.raises(StowError, match=r"/dicomweb/studies answered 401"):
            StowClient(f"{api.url}/dicomweb", "not-a-token").store(files)
        with pytest.raises(StowError, match="no files"):
            StowClient(f"{api.url}/dicomweb", sender).store([])
        # Not DICOM: the server answers 409 with a FailedSOPSequence, so the study is not whole.
        junk = tmp_path / "junk.dcm"
        junk.write_bytes(b"not dicom")
        with pytest.raises(StowError, match="answered 409"):
            StowClient(f"{api.url}/dicomweb", sender).store([junk])


def test_unreachable_endpoint_names_the_target(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    with pytest.raises(StowError, match=r"STOW-RS to http://127\.0\.0\.1:9/x/studies failed"):
        StowClient("http://127.0.0.1:9/x", timeout_s=5).store(files)


def test_service_client_stows_through_the_same_client(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    with live_api(api_settings(tmp_path)) as api:
        client = ServiceClient(api.url, api.tokens[Role.SENDER], api.tokens[Role.READER])
        study = client.stow(files)
        job_id = client.queue(study)
        assert client.get(f"/v1/jobs/{job_id}")["study_instance_uid"] == study
        refused = ServiceClient(api.url, "wrong", api.tokens[Role.READER])
        with pytest.raises(StowError, match="answered 401"):
            refused.stow(files)
