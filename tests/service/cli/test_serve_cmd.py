"""``fedseg serve`` as a process on a free loopback port: health, tokens, TLS, clean stop."""

from __future__ import annotations

import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from service.auth.tokens import Role, create_token
from service.cli.main import build_parser
from service.db.engine import make_engine, session_factory
from service.db.migrate import upgrade
from service.errors import ConfigurationError
from tests.service.cli.server_process import (
    fedseg_env,
    running,
    wait_healthy,
)
from tests.service.dimse.test_scp import free_port


def _tokens(tmp_path: Path, *roles: Role) -> list[str]:
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'fedseg.db'}")
    upgrade(engine)
    with session_factory(engine)() as session, session.begin():
        tokens = [create_token(session, f"test-{role.value}", role)[0] for role in roles]
    engine.dispose()
    return tokens


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def test_serve_answers_with_tokens_and_stops_cleanly(tmp_path: Path) -> None:
    env = fedseg_env(tmp_path)
    reader, sender = _tokens(tmp_path, Role.READER, Role.SENDER)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(["serve", "--port", str(port)], env) as server:
        wait_healthy(url, server)
        assert httpx.get(f"{url}/readyz", timeout=10).json() == {"status": "ready"}
        assert httpx.get(f"{url}/v1/jobs", timeout=10).status_code == 401
        jobs = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {reader}"})
        assert jobs.status_code == 200 and jobs.json() == []
        forbidden = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {sender}"})
        assert forbidden.status_code == 403
        page = httpx.get(f"{url}/dashboard/", timeout=10)
        assert page.status_code == 200 and "viewer-canvas" in page.text
        server.terminate()
        # uvicorn shuts down (lifespan: worker thread stopped) and then re-raises SIGTERM.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    log = (tmp_path / "serve.log").read_text()
    assert "Application shutdown complete." in log


def test_serve_over_tls(tmp_path: Path) -> None:
    env = fedseg_env(tmp_path)
    cert, key = _self_signed(tmp_path)
    (reader,) = _tokens(tmp_path, Role.READER)
    trusted = ssl.create_default_context(cafile=str(cert))
    port = free_port()
    args = ["serve", "--port", str(port), "--no-worker"]
    with running([*args, "--tls-certfile", str(cert), "--tls-keyfile", str(key)], env) as server:
        wait_healthy(f"https://127.0.0.1:{port}", server, verify=trusted)
        models = httpx.get(
            f"https://127.0.0.1:{port}/v1/models",
            headers={"Authorization": f"Bearer {reader}"},
            verify=trusted,
            timeout=10,
        )
        assert models.status_code == 200 and models.json() == []
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # untrusted without the certificate
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=5)


def test_serve_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    parser = build_parser()
    args = parser.parse_args(
        ["serve", "--state-dir", str(tmp_path), "--port", "1", "--tls-certfile", str(cert)]
    )
    with pytest.raises(ConfigurationError, match="both a certificate and its key"):
        args.handler(args)
