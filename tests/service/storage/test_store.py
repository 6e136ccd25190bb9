from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from service.db.models import Instance, InstanceOrigin, Study, StudyState
from service.storage.errors import InstanceRejectedError
from service.storage.ingest import ingest
from service.storage.store import InstanceStore
from tests.service.jobs.support import sqlite_db, write_ct_study


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "store")
    data = b"DICM" * 100
    digest = hashlib.sha256(data).hexdigest()
    first = store.put(data)
    second = store.put(data)
    assert first == second
    assert first.path == tmp_path / "store" / digest[:2] / digest[2:4] / f"{digest}.dcm"
    assert first.path.read_bytes() == data
    assert list(first.path.parent.iterdir()) == [first.path]  # no temporary left behind
    assert store.delete(digest) and not first.path.exists() and not store.delete(digest)


def test_path_for_refuses_non_digests(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        InstanceStore(tmp_path).path_for("../../etc/passwd")


def test_ingest_records_instance_and_touches_study(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    files = write_ct_study(tmp_path / "ct")
    ds = pydicom.dcmread(files[0])
    with factory() as session, session.begin():
        outcome = ingest(session, store, files[0].read_bytes(), "PACS")
        again = ingest(session, store, files[0].read_bytes(), "PACS")
    assert outcome.new and not again.new
    assert outcome.sop_instance_uid == ds.SOPInstanceUID
    with factory() as session:
        row = session.get(Instance, ds.SOPInstanceUID)
        study = session.get(Study, ds.StudyInstanceUID)
    assert row is not None and row.origin == InstanceOrigin.RECEIVED and row.modality == "CT"
    assert row.attributes["SeriesDescription"] == "phantom CT"
    assert store.path_for(row.sha256).read_bytes() == files[0].read_bytes()
    assert study is not None and study.state == StudyState.RECEIVING


def test_ingest_rejects_non_dicom_and_missing_uids(tmp_path: Path) -> None:
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    with factory() as session, pytest.raises(InstanceRejectedError, match="not a readable DICOM"):
        ingest(session, store, b"hello world", "x")
    files = write_ct_study(tmp_path / "ct")
    ds = pydicom.dcmread(files[0])
    del ds.SeriesInstanceUID
    out = tmp_path / "broken.dcm"
    ds.save_as(out)
    with factory() as session, pytest.raises(InstanceRejectedError, match="SeriesInstanceUID"):
        ingest(session, store, out.read_bytes(), "x")
