"""A full disk: new data is refused with a clear status, and what is stored stays intact.

A small filesystem cannot be mounted without root, so the free-space reserve
(``min_free_bytes``) is set above the disk's free space: the same branch a full disk takes.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import PositronEmissionTomographyImageStorage  # type: ignore[attr-defined]

from service.auth.tokens import Role
from service.config import Settings
from service.db.models import Instance
from service.dicomweb.multipart import write_related
from service.dimse.scp import OUT_OF_RESOURCES, ScpConfig, start_scp
from service.storage.store import InstanceStore
from tests.service.api.conftest import Api
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db

DataDir = Callable[[str], Path]


def _pet(data_dir: DataDir) -> list[Path]:
    return sorted(data_dir("sts-pet/ibsi_validation/dicom/STS_003/PET/image").glob("*.dcm"))


def _stored_digests(api: Api) -> dict[str, str]:
    with api.state.factory() as session:
        return {row.sop_instance_uid: row.sha256 for row in session.query(Instance)}


def test_stow_answers_507_when_full_and_keeps_what_it_has(api: Api, data_dir: DataDir) -> None:
    files = [p.read_bytes() for p in _pet(data_dir)]
    headers = api.headers(Role.SENDER)
    body, content_type = write_related(files[:5], "application/dicom")
    first = api.client.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type} | headers
    )
    assert first.status_code == 200
    before = _stored_digests(api)

    # The disk is now "full": the reserve is larger than the free space.
    # The whole disk's size: above the free space whatever other processes free meanwhile.
    api.state.settings.min_free_bytes = shutil.disk_usage(api.state.store.root).total
    body, content_type = write_related(files[5:], "application/dicom")
    full = api.client.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type} | headers
    )
    assert full.status_code == 507
    assert "not enough disk space" in full.json()["detail"]
    assert _stored_digests(api) == before  # nothing new, nothing lost
    for sha in before.values():  # and the stored files are intact
        path = api.state.store.path_for(sha)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha

    api.state.settings.min_free_bytes = 0  # space freed: the same body now goes in
    again = api.client.post(
        "/dicomweb/studies", content=body, headers={"Content-Type": content_type} | headers
    )
    assert again.status_code == 200
    assert len(_stored_digests(api)) == len(files)


def test_c_store_answers_out_of_resources_when_full(tmp_path: Path, data_dir: DataDir) -> None:
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    port = free_port()
    reserve = shutil.disk_usage(tmp_path).total  # free + 1 raced with other processes freeing space
    stop = start_scp(
        ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",), min_free_bytes=reserve), factory, store
    )
    try:
        wait_for_port(port)
        ae = AE(ae_title="PACS")
        ae.add_requested_context(PositronEmissionTomographyImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="FEDSEG")
        assert assoc.is_established
        status: Dataset = assoc.send_c_store(dcmread(_pet(data_dir)[0]))
        assoc.release()
    finally:
        stop()
    assert status.Status == OUT_OF_RESOURCES
    with factory() as session:
        assert session.query(Instance).count() == 0
    assert not any(p.is_file() for p in store.root.rglob("*"))


@pytest.mark.parametrize("reserve", [0, 1])
def test_reserve_setting_is_validated(reserve: int) -> None:
    assert Settings(min_free_bytes=reserve).min_free_bytes == reserve
    with pytest.raises(ValueError, match="greater than or equal"):
        Settings(min_free_bytes=-1)
