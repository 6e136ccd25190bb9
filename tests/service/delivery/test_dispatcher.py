from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pydicom
from sqlalchemy import select

from service.auth.tokens import Role
from service.config import Destination
from service.db.models import Delivery, DeliveryState, Instance, Job
from service.delivery.dispatcher import DeliveryPolicy, deliver_due, schedule
from service.jobs.queue import QueuePolicy
from service.jobs.worker import WorkerContext, work_once
from service.storage.ingest import ingest
from tests.dcmtk import dcmtk
from tests.service.api.conftest import api_settings
from tests.service.dimse.test_scp import free_port, wait_for_port
from tests.service.jobs.support import queued_ct_job, threshold_seg_runner, write_ct_study
from tests.service.live_api import live_api


def _finished_job(tmp_path: Path):  # type: ignore[no-untyped-def]
    factory, store, job_id = queued_ct_job(tmp_path, QueuePolicy())
    ctx = WorkerContext(factory, store, tmp_path / "results", threshold_seg_runner)
    assert work_once(ctx)
    return factory, store, job_id


def test_results_arrive_at_a_dcmtk_storescp(tmp_path: Path) -> None:
    exe = dcmtk("storescp")
    factory, store, job_id = _finished_job(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    peer = subprocess.Popen([exe, "-aet", "PLANNER", "-od", str(inbox), str(port)])
    try:
        wait_for_port(port)
        destination = Destination(name="tps", kind="dimse", port=port, ae_title="PLANNER")
        schedule(factory, job_id, [destination])
        schedule(factory, job_id, [destination])  # idempotent
        assert deliver_due(factory, store, [destination], DeliveryPolicy()) == 1
    finally:
        peer.terminate()
        peer.wait(timeout=10)
    (received,) = list(inbox.iterdir())
    assert pydicom.dcmread(received).Modality == "SEG"
    with factory() as session:
        (row,) = session.query(Delivery).all()
    assert row.state == DeliveryState.DELIVERED and row.attempts == 1 and row.last_error is None


def test_unreachable_destination_is_retried_then_failed(tmp_path: Path) -> None:
    factory, store, job_id = _finished_job(tmp_path)
    destination = Destination(name="down", kind="dimse", port=free_port(), ae_title="GONE")
    schedule(factory, job_id, [destination])
    policy = DeliveryPolicy(max_attempts=3, retry_s=0)
    for _ in range(5):
        deliver_due(factory, store, [destination], policy)
    with factory() as session:
        (row,) = session.query(Delivery).all()
        assert session.get(Job, job_id) is not None
    assert row.state == DeliveryState.FAILED and row.attempts == 3
    assert "was not accepted" in (row.last_error or "")


def test_delayed_retry_waits(tmp_path: Path) -> None:
    factory, store, job_id = _finished_job(tmp_path)
    destination = Destination(name="down", kind="dimse", port=free_port(), ae_title="GONE")
    schedule(factory, job_id, [destination])
    policy = DeliveryPolicy(max_attempts=3, retry_s=3600)
    assert deliver_due(factory, store, [destination], policy) == 1
    assert deliver_due(factory, store, [destination], policy) == 0  # next try is an hour away


def test_a_result_uid_now_filed_under_another_study_is_never_delivered(tmp_path: Path) -> None:
    exe = dcmtk("storescp")
    factory, store, job_id = _finished_job(tmp_path)
    # Another patient's instance, stored; then the job's SEG row pointing at it under its
    # study: the state a re-used SOP Instance UID could leave (issue 17, item 1).
    other = pydicom.dcmread(write_ct_study(tmp_path / "other", seed="other")[0])
    other.PatientID = "OTHER-PATIENT"
    buffer = io.BytesIO()
    other.save_as(buffer, enforce_file_format=True)
    with factory() as session, session.begin():
        forged = ingest(session, store, buffer.getvalue(), "stow:attacker")
        job = session.get(Job, job_id)
        seg_uid = job.results["seg"][0]["sop_instance_uid"]
        seg_row = session.get(Instance, seg_uid)
        forged_row = session.get(Instance, forged.sop_instance_uid)
        seg_row.study_instance_uid = forged_row.study_instance_uid
        seg_row.sha256 = forged_row.sha256
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    peer = subprocess.Popen([exe, "-aet", "PLANNER", "-od", str(inbox), str(port)])
    try:
        wait_for_port(port)
        destination = Destination(name="tps", kind="dimse", port=port, ae_title="PLANNER")
        schedule(factory, job_id, [destination])
        deliver_due(factory, store, [destination], DeliveryPolicy(max_attempts=1))
    finally:
        peer.terminate()
        peer.wait(timeout=10)
    assert list(inbox.iterdir()) == [], "nothing may reach the planner"
    with factory() as session:
        (row,) = session.query(Delivery).all()
    assert row.state == DeliveryState.FAILED
    assert "no longer stored as results of study" in (row.last_error or "")


def test_results_arrive_at_a_stow_rs_endpoint(tmp_path: Path) -> None:
    factory, store, job_id = _finished_job(tmp_path)
    with live_api(api_settings(tmp_path / "peer")) as peer:
        destination = Destination(
            name="archive",
            kind="stowrs",
            url=f"{peer.url}/dicomweb",
            bearer_token=peer.tokens[Role.SENDER],
        )
        refused = Destination(name="no-token", kind="stowrs", url=f"{peer.url}/dicomweb")
        schedule(factory, job_id, [destination, refused])
        deliver_due(factory, store, [destination, refused], DeliveryPolicy(max_attempts=1))
        with peer.state.factory() as session:
            modalities = session.scalars(select(Instance.modality)).all()
    assert modalities == ["SEG"]
    with factory() as session:
        rows = {row.destination: row for row in session.query(Delivery).all()}
    assert rows["archive"].state == DeliveryState.DELIVERED
    assert rows["no-token"].state == DeliveryState.FAILED
    assert "answered 401" in (rows["no-token"].last_error or "")
