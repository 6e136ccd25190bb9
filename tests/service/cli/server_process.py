"""Run ``fedseg`` commands as subprocesses on loopback, with a temporary state folder.

Imported as ``from tests.service.cli.server_process import ...``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

FEDSEG = [sys.executable, "-m", "service.cli.main"]
REPO = Path(__file__).resolve().parents[3]


def fedseg_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose state, models and ports stay inside ``tmp_path`` and loopback."""
    env = dict(os.environ)
    env.update(
        FEDSEG_STATE_DIR=str(tmp_path / "state"),
        FEDSEG_MODEL_STORE=str(tmp_path / "models"),
        FEDSEG_SHIPPED_MODELS=str(tmp_path / "shipped"),
        FEDSEG_API_HOST="127.0.0.1",
        FEDSEG_DICOM_PORT="0",
        FEDSEG_QUIET_PERIOD_S="3600",
        FEDSEG_WORKER_POLL_S="0.2",
        PYTHONPATH=str(REPO),
    )
    env.pop("FEDSEG_ENV_FILE", None)
    return env


def fedseg(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a short fedseg command; fails the test on a non-zero exit."""
    done = subprocess.run(
        [*FEDSEG, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"fedseg {' '.join(args)} failed:\n{done.stderr}"
    return done


@contextmanager
def running(args: Sequence[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A long-running fedseg command, stopped by SIGTERM (then killed) when the block ends."""
    log = open(Path(env["FEDSEG_STATE_DIR"]).parent / f"{args[0]}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [*FEDSEG, *args], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def wait_healthy(url: str, process: subprocess.Popen[str], verify: object = True) -> None:
    """Poll ``url``/healthz until it answers (fails if the process exits or 60 s pass)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode} before answering")
        try:
            if httpx.get(f"{url}/healthz", timeout=2, verify=verify).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not become healthy within 60 s")
