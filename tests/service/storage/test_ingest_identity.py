"""One SOP Instance UID is one instance of one study and one patient (issue 17, items 1 and 17).

A re-sent SOP Instance UID that names another study, another patient or a fedseg result is
refused and changes nothing; a same-study re-send that changes the instance replaces it, is
audited and logged, and leaves no orphaned file. Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bench.hostile_dicom import with_values
from service.db.engine import make_engine, session_factory
from service.db.migrate import upgrade
from service.db.models import AuditEvent, Instance, InstanceOrigin
from service.storage.errors import InstanceRejectedError
from service.storage.ingest import _flush, ingest
from service.storage.store import InstanceStore
from tests.service.jobs.support import postgres_schema, sqlite_db, write_ct_study


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine, made = sqlite_db(tmp_path)
        yield made
        engine.dispose()
        return
    with postgres_schema() as url:
        engine = make_engine(url)
        upgrade(engine)
        yield session_factory(engine)
        engine.dispose()


def _store(factory: sessionmaker[Session], store: InstanceStore, data: bytes, **kw: object) -> None:
    with factory() as session, session.begin():
        ingest(session, store, data, "test", **kw)  # type: ignore[arg-type]


def _row(factory: sessionmaker[Session], uid: str) -> Instance:
    with factory() as session:
        row = session.get(Instance, uid)
    assert row is not None
    return row


def _files(store: InstanceStore) -> set[str]:
    return {p.stem for p in store.root.rglob("*.dcm")}


def test_sop_uid_of_another_study_or_patient_is_refused(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = InstanceStore(tmp_path / "store")
    victim = [p.read_bytes() for p in write_ct_study(tmp_path / "a", seed="victim")]
    for data in victim:
        _store(factory, store, data)
    uid = str(pydicom.dcmread(io.BytesIO(victim[0])).SOPInstanceUID)
    before, files = _row(factory, uid), _files(store)
    forgeries = {
        "another study and patient": with_values(
            victim[0], StudyInstanceUID="1.2.826.0.1.99.1", PatientID="OTHER"
        ),
        "another study, same patient": with_values(victim[0], StudyInstanceUID="1.2.826.0.1.99.2"),
    }
    for name, forged in forgeries.items():
        with pytest.raises(InstanceRejectedError, match="another study") as caught:
            _store(factory, store, forged)
        assert uid in str(caught.value), name
        assert "OTHER" not in str(caught.value)
    after = _row(factory, uid)
    assert (after.study_instance_uid, after.sha256) == (before.study_instance_uid, before.sha256)
    assert _files(store) == files  # the forged bytes were not kept either


def test_sop_uid_of_a_single_instance_study_keeps_its_patient(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = InstanceStore(tmp_path / "store")
    (first,) = [p.read_bytes() for p in write_ct_study(tmp_path / "a", slices=4)][:1]
    _store(factory, store, first)
    with pytest.raises(InstanceRejectedError, match="another patient"):
        _store(factory, store, with_values(first, PatientID="SOMEONE-ELSE"))
    uid = str(pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID)
    assert store.path_for(_row(factory, uid).sha256).read_bytes() == first


def test_sop_uid_of_a_result_is_refused(factory: sessionmaker[Session], tmp_path: Path) -> None:
    store = InstanceStore(tmp_path / "store")
    files = [p.read_bytes() for p in write_ct_study(tmp_path / "a")]
    _store(factory, store, files[0])
    # Stands for a result SEG: the job ingests its outputs with origin RESULT.
    result = with_values(files[1], SeriesInstanceUID="1.2.826.0.1.99.3", Modality="SEG")
    _store(factory, store, result, origin=InstanceOrigin.RESULT)
    uid = str(pydicom.dcmread(io.BytesIO(result)).SOPInstanceUID)
    for forged in (
        with_values(result, Modality="CT"),  # same study
        with_values(result, StudyInstanceUID="1.2.826.0.1.99.4", PatientID="X"),
    ):
        with pytest.raises(InstanceRejectedError, match=r"result|another study"):
            _store(factory, store, forged)
    row = _row(factory, uid)
    assert row.origin == InstanceOrigin.RESULT and row.modality == "SEG"


def test_changed_resend_in_the_same_study_is_audited_and_leaves_no_orphan(
    factory: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = InstanceStore(tmp_path / "store")
    files = [p.read_bytes() for p in write_ct_study(tmp_path / "a")]
    for data in files:
        _store(factory, store, data)
    uid = str(pydicom.dcmread(io.BytesIO(files[0])).SOPInstanceUID)
    old = _row(factory, uid).sha256
    changed = with_values(files[0], SeriesDescription="phantom CT, corrected")
    with (
        caplog.at_level(logging.INFO, logger="service.storage"),
        factory() as session,
        session.begin(),
    ):
        outcome = ingest(session, store, changed, "stow:pacs")
    assert outcome.new
    new = _row(factory, uid).sha256
    assert new != old and store.path_for(new).read_bytes() == changed
    assert not store.path_for(old).exists(), "the replaced file was left on disk"
    assert len(_files(store)) == len(files)
    with factory() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "instance replaced")
        ).all()
    assert [(e.actor, e.study_instance_uid) for e in events] == [
        ("stow:pacs", str(pydicom.dcmread(io.BytesIO(files[0])).StudyInstanceUID))
    ]
    assert uid in events[0].detail and old[:12] in events[0].detail
    assert any("replaced" in r.getMessage() and uid in r.getMessage() for r in caplog.records)


def test_a_replacement_that_is_rolled_back_keeps_the_old_file(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    store = InstanceStore(tmp_path / "store")
    (first,) = [p.read_bytes() for p in write_ct_study(tmp_path / "a")][:1]
    _store(factory, store, first)
    uid = str(pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID)
    old = _row(factory, uid).sha256
    with pytest.raises(RuntimeError), factory() as session, session.begin():
        ingest(session, store, with_values(first, SeriesDescription="changed"), "test")
        raise RuntimeError("the caller fails before its commit")
    assert _row(factory, uid).sha256 == old and store.path_for(old).exists()


def test_a_value_postgresql_refuses_is_a_refusal_without_the_value(tmp_path: Path) -> None:
    # Ingest validates first; this is the net behind it, so it is driven directly.
    with postgres_schema() as url:
        engine = make_engine(url)
        upgrade(engine)
        factory = session_factory(engine)
        with factory() as session, pytest.raises(InstanceRejectedError) as caught:
            session.add(
                Instance(
                    sop_instance_uid="1.2.3",
                    sop_class_uid="1.2.3",
                    study_instance_uid="1.2.3",
                    series_instance_uid="1.2.3",
                    modality="SECRETMODALITY-TOO-LONG",
                    sha256="0" * 64,
                    size=1,
                )
            )
            _flush(session)
        engine.dispose()
    assert "database refused" in str(caught.value)
    assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None
