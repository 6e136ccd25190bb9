"""No PHI in logs: a full STOW-RS → job → results run never writes the patient's name or ID.

The study is a real PET series whose PatientName and PatientID are set to distinctive
strings. Both the log records of an in-process run (DEBUG, every logger) and the whole output
of a ``fedseg serve`` subprocess at DEBUG are scanned.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
from pathlib import Path

import httpx
import pydicom
import pytest

from bench.load_test import SOURCE_SERIES, make_studies, running_service, wait_for_jobs
from service.audit import QueryRedactingFilter, redact_access_log
from service.auth.tokens import Role
from service.config import Settings
from service.dicomweb.multipart import write_related
from service.jobs.runner import segment_runner
from service.jobs.worker import WorkerContext, work_once
from tests.service.api.conftest import Api, api_settings
from tests.service.api.test_end_to_end import _install_suv_threshold_model

NAME, PATIENT_ID = "Quokkafield^Zyxwvuta", "PHI-7731-QX"


def _study(data_root: Path, tag: str) -> list[bytes]:
    (study,) = make_studies(data_root / SOURCE_SERIES, 1, 10, tag)
    out = []
    for data in study:
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PatientName, ds.PatientID = NAME, PATIENT_ID
        buffer = io.BytesIO()
        ds.save_as(buffer)
        out.append(buffer.getvalue())
    return out


def _assert_clean(text: str) -> None:
    for secret in (NAME, PATIENT_ID, "Quokkafield", "Zyxwvuta"):
        assert secret not in text, f"{secret!r} appears in the logs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return api_settings(tmp_path, max_upload_bytes=50_000_000, min_free_bytes=0)


def test_in_process_run_logs_no_phi(
    api: Api, settings: Settings, data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _install_suv_threshold_model(settings, tmp_path)
    body, content_type = write_related(_study(data_root, "phi-a"), "application/dicom")
    headers = {"Content-Type": content_type} | api.headers(Role.SENDER)
    assert api.client.post("/dicomweb/studies", content=body, headers=headers).status_code == 200
    study = pydicom.dcmread(io.BytesIO(_study(data_root, "phi-a")[0])).StudyInstanceUID
    created = api.client.post(
        "/v1/jobs", json={"study_instance_uid": study}, headers=api.headers(Role.SENDER)
    )
    state = api.state
    ctx = WorkerContext(state.factory, state.store, state.results_root,
                        segment_runner(settings), state.policy, quiet_period_s=3600)  # fmt: skip
    while work_once(ctx):
        pass
    job = api.client.get(f"/v1/jobs/{created.json()['id']}", headers=api.headers(Role.READER))
    assert job.json()["state"] == "succeeded"
    # The results do carry the patient (they must); the logs must not.
    seg = api.client.get(
        f"/v1/jobs/{created.json()['id']}/results/seg", headers=api.headers(Role.READER)
    )
    assert str(pydicom.dcmread(io.BytesIO(seg.content)).PatientID) == PATIENT_ID
    assert len(caplog.records) > 5
    _assert_clean(
        "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    )


def test_access_log_filter_drops_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.hardening.access")
    redact_access_log(logger.name)
    redact_access_log(logger.name)  # idempotent
    assert sum(isinstance(f, QueryRedactingFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET",
                    f"/dicomweb/studies?PatientID={PATIENT_ID}", "1.1", 200)  # fmt: skip
    (message,) = [r.getMessage() for r in caplog.records]
    assert message == '127.0.0.1:1 - "GET /dicomweb/studies HTTP/1.1" 200'


def test_serve_subprocess_output_has_no_phi(data_root: Path, tmp_path: Path) -> None:
    extra = {"FEDSEG_LOG_LEVEL": "DEBUG"}
    with running_service(tmp_path, quiet_period_s=0.5, extra_env=extra) as service:
        body, content_type = write_related(_study(data_root, "phi-b"), "application/dicom")
        headers = {"Authorization": f"Bearer {service.token}", "Content-Type": content_type}
        stow = httpx.post(f"{service.url}/dicomweb/studies", content=body, headers=headers)
        assert stow.status_code == 200
        found = wait_for_jobs(service.database_url(), 1, 120)
        reader = {"Authorization": f"Bearer {service.reader_token}"}
        search = httpx.get(f"{service.url}/dicomweb/studies?PatientID={PATIENT_ID}", headers=reader)
        assert search.status_code == 200 and len(search.json()) == 1
        time.sleep(0.5)  # let the last log lines reach the file
    assert found.jobs_by_state == {"succeeded": 1}
    output = service.log_path.read_text(errors="replace")
    assert "GET /dicomweb/studies" in output  # the access log was captured
    # The query string carries the patient ID; the access log must not repeat it.
    _assert_clean(output)


# Invalid patient values that pydicom and highdicom quote in warnings and errors (#17 item 7).
_INVALID = {
    "PatientName": ("PN", "Quokkafield"),  # one word: highdicom's person-name warning
    "PatientBirthDate": ("DA", "1956-03-14"),  # not DICOM's DA format
    "PatientSex": ("CS", "Malefemale"),
    "PatientAge": ("AS", "56 years"),
}


def _invalid_patient_study(data_root: Path, tag: str) -> list[bytes]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each invalid value it is given
        for data in _study(data_root, tag):
            ds = pydicom.dcmread(io.BytesIO(data))
            for keyword, (vr, value) in _INVALID.items():
                ds.add_new(keyword, vr, value)
            buffer = io.BytesIO()
            ds.save_as(buffer)
            out.append(buffer.getvalue())
    return out


def test_invalid_patient_values_stay_out_of_logs_and_job_errors(
    data_root: Path, tmp_path: Path
) -> None:
    extra = {"FEDSEG_LOG_LEVEL": "DEBUG"}
    with running_service(tmp_path, quiet_period_s=0.5, extra_env=extra) as service:
        body, content_type = write_related(_invalid_patient_study(data_root, "phi-c"),
                                           "application/dicom")  # fmt: skip
        headers = {"Authorization": f"Bearer {service.token}", "Content-Type": content_type}
        stow = httpx.post(f"{service.url}/dicomweb/studies", content=body, headers=headers)
        assert stow.status_code == 200
        found = wait_for_jobs(service.database_url(), 1, 120)
        reader = {"Authorization": f"Bearer {service.reader_token}"}
        jobs = httpx.get(f"{service.url}/v1/jobs", headers=reader).json()
        time.sleep(0.5)  # let the last log lines reach the file
    # Whether the job succeeds (values dropped) or fails, no value is repeated anywhere.
    assert sum(found.jobs_by_state.values()) == 1, found.jobs_by_state
    output = service.log_path.read_text(errors="replace") + json.dumps(jobs)
    assert "unlikely to represent the intended person name" in output  # the warning is logged
    for _, value in _INVALID.values():
        assert value not in output, f"{value!r} in the log or a job"
    _assert_clean(output)
