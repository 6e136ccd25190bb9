"""``fedseg worker`` as a process: claims a queued job from the shared database, segments it with
the installed model, and stops on SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from service.config import Settings
from service.db.migrate import upgrade
from service.db.models import Job, JobState
from service.jobs.intake import enqueue_study
from service.server import Server
from service.storage.ingest import ingest
from tests.service.cli.server_process import fedseg_env, running
from tests.service.web.support import PET_STUDY, DataDir, install_suv_threshold_model


def test_worker_runs_a_queued_job(tmp_path: Path, data_dir: DataDir) -> None:
    env = fedseg_env(tmp_path)
    settings = Settings(
        state_dir=Path(env["FEDSEG_STATE_DIR"]), model_store=Path(env["FEDSEG_MODEL_STORE"])
    )
    install_suv_threshold_model(settings, tmp_path)
    state = Server.from_settings(settings)
    upgrade(state.engine)
    with state.factory() as session, session.begin():
        outcomes = [
            ingest(session, state.store, p.read_bytes(), "test")
            for p in sorted(data_dir(PET_STUDY).glob("*.dcm"))
        ]
    job = enqueue_study(state.factory, outcomes[0].study_instance_uid, state.policy)

    with running(["worker"], env) as worker:
        deadline = time.monotonic() + 120
        current = JobState.QUEUED.value
        while time.monotonic() < deadline and worker.poll() is None:
            with state.factory() as session:
                current = session.get(Job, job.id).state  # type: ignore[union-attr]
            if current in (JobState.SUCCEEDED.value, JobState.FAILED.value):
                break
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    with state.factory() as session:
        done = session.get(Job, job.id)
        assert done is not None
        assert done.state == JobState.SUCCEEDED.value, done.error
        assert {"seg", "rtstruct", "sr", "measurements"} <= set(done.results)
        assert done.lease_owner is None
    state.engine.dispose()
