"""C-STORE goes through the same ingest(): the same refusals answer 0xC000 (issue 17, items 1,
3, 11 and 13), and the good instances of the association are stored."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from bench.hostile_dicom import deflate_bomb, with_raw_value, with_values
from service.db.models import Instance
from service.dimse.scp import ScpConfig, start_scp
from service.storage.store import InstanceStore
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import sqlite_db, write_ct_study

DEFLATED = "1.2.840.10008.1.2.1.99"


def test_c_store_refuses_what_stow_refuses(tmp_path: Path) -> None:
    engine, factory = sqlite_db(tmp_path)
    port = free_port()
    ct = [p.read_bytes() for p in write_ct_study(tmp_path / "ct", seed="victim")]
    other = [p.read_bytes() for p in write_ct_study(tmp_path / "other", seed="other")]
    cases = {
        "victim": ct[0],
        "forged SOP UID": with_values(ct[0], StudyInstanceUID="1.2.826.0.1.55.1", PatientID="X"),
        "invalid study UID": with_raw_value(other[0], "StudyInstanceUID", "1.2.3/../4"),
        "65-character series UID": with_raw_value(other[1], "SeriesInstanceUID", "1." * 32 + "1"),
        # The SCP accepts uncompressed and deflated syntaxes only: the 65535 x 65535 header
        # comes with native pixel data that is far too short, which ingest never reads.
        "65535 x 65535 pixels": with_values(other[2], Rows=65535, Columns=65535),
        "deflate bomb": deflate_bomb(other[3], 3 * 1024**3 // 1024),  # 3 MiB > 1 MiB limit
        "good": ct[1],
    }
    paths = {}
    for name, data in cases.items():
        paths[name] = tmp_path / f"{name}.dcm"
        paths[name].write_bytes(data)
    stop = start_scp(
        ScpConfig("FEDSEG", "127.0.0.1", port, ("PACS",), max_decoded_bytes=1024**2),
        factory,
        InstanceStore(tmp_path / "store"),
    )
    try:
        wait_for_port(port)
        scu = AE(ae_title="PACS")
        scu.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        scu.add_requested_context(CTImageStorage, DEFLATED)
        assoc = scu.associate("127.0.0.1", port, ae_title="FEDSEG")
        assert assoc.is_established
        statuses = {}
        for name, path in paths.items():
            status = assoc.send_c_store(path)
            statuses[name] = int(status.Status)
        assoc.release()
    finally:
        stop()
    assert statuses == {
        "victim": 0x0000,
        "forged SOP UID": 0xC000,
        "invalid study UID": 0xC000,
        "65-character series UID": 0xC000,
        "65535 x 65535 pixels": 0xC000,
        "deflate bomb": 0xC000,
        "good": 0x0000,
    }
    with factory() as session:
        rows = session.query(Instance).all()
    assert {r.sop_instance_uid for r in rows} == {
        str(pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID) for d in (ct[0], ct[1])
    }
    assert {r.study_instance_uid for r in rows} == {
        str(pydicom.dcmread(io.BytesIO(ct[0])).StudyInstanceUID)
    }
    engine.dispose()
