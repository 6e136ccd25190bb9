"""TLS for the API: ``fedseg serve`` with a real certificate answers HTTPS only.

The certificates come from the openssl CLI (a project CA and a server certificate for
127.0.0.1), as in test_dimse_tls.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.load_test import free_port, service_env
from tests.hardening.test_dimse_tls import _ca, _signed


def test_serve_over_https_with_a_real_certificate(tmp_path: Path) -> None:
    ca = _ca(tmp_path, "fedseg-ca")
    cert, key = _signed(tmp_path, "api", ca, "IP:127.0.0.1")
    port = free_port()
    env = service_env(tmp_path, 30.0) | {
        "FEDSEG_API_PORT": str(port),
        "FEDSEG_DICOM_PORT": "0",
        "FEDSEG_TLS_CERTFILE": str(cert),
        "FEDSEG_TLS_KEYFILE": str(key),
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve"], env=env, stdout=log, stderr=log
    )
    try:
        answer = None
        deadline = time.monotonic() + 60
        while answer is None and time.monotonic() < deadline:
            try:
                answer = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=str(ca[0]))
            except httpx.ConnectError:
                time.sleep(0.3)
        assert answer is not None and answer.status_code == 200
        with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the project CA
            httpx.get(f"https://127.0.0.1:{port}/healthz")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
