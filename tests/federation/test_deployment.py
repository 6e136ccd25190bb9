"""A real SuperLink and three SuperNodes over TLS with node authentication, on loopback.

One run of two rounds of a tiny model; the third site is killed mid-round 1 and the run still
completes with the other two. A SuperNode that does not trust the project CA is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from federation.certs import create_pilot_certificates
from federation.deploy import (
    SuperLinkSpec,
    flower_config_toml,
    flower_executable,
    superlink_command,
    supernode_command,
)
from tests.federation.deployment import Process, flower_env, free_port

ROOT = Path(__file__).resolve().parents[2]
SITES = {"a": ("liver", 1), "b": ("spleen", 2), "c": ("liver", 3)}
pytestmark = pytest.mark.timeout(600)


@dataclass
class Deployment:
    address: str
    certs: Path
    env: dict[str, str]
    tmp: Path
    superlink: Process
    nodes: dict[str, Process]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("federation")
    certs = tmp / "certs"
    create_pilot_certificates(certs, sites=list(SITES))
    home = tmp / "flwr-home"
    home.mkdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    (home / "config.toml").write_text(flower_config_toml("pilot", address, certs / "ca.crt"))
    env = flower_env(home)
    processes: list[Process] = []
    try:
        superlink = Process(
            superlink_command(SuperLinkSpec(certs, host="127.0.0.1", port=port)), env, tmp
        )
        processes.append(superlink)
        assert superlink.wait_for("Uvicorn running", 60), superlink.text
        nodes = {}
        for name, (task, index) in SITES.items():
            register = subprocess.run(
                [flower_executable("flwr"), "supernode", "register", str(certs / f"{name}.pub")],
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert "registered successfully" in register.stdout, register.stdout + register.stderr
            config = {"site": name, "tasks": task, "phantom-site": index, "cases": 1}
            command = supernode_command(
                address, certs / "ca.crt", certs / f"{name}.key", config, free_port()
            )
            nodes[name] = Process(command, env, tmp)
            processes.append(nodes[name])
        yield Deployment(address, certs, env, tmp, superlink, nodes)
    finally:
        for process in reversed(processes):
            process.kill()


def test_two_rounds_over_tls_survive_a_killed_site(deployment: Deployment) -> None:
    state = deployment.tmp / "state"
    run_config = (
        f'state-dir="{state}" num-rounds=2 min-sites=2 local-steps=1 filters="4,8" '
        "round-timeout=90 connect-timeout=60"
    )
    # Through `fedseg federation run`, which wraps `flwr run --stream` and then prints the rounds.
    entry = "from service.cli.main import main; raise SystemExit(main())"
    run = Process(
        [sys.executable, "-c", entry, "federation", "run", "pilot", "--run-config", run_config],
        deployment.env,
        deployment.tmp,
    )
    try:
        assert run.wait_for("round 1: training on 3 sites", 240), run.text
        deployment.nodes["c"].kill()
        assert run.wait_for("finished at round 2", 420), run.text
        assert run.wait_for("round 2  sites a,b  liver=", 60), run.text
        assert "rounds of this run, mean Dice per task" in run.text
    finally:
        run.kill()
    entries = [json.loads(line) for line in (state / "registry.jsonl").read_text().splitlines()]
    assert [e["server_round"] for e in entries] == [1, 2]
    # Site c died during round 1: the rounds completed with the sites still online.
    assert entries[1]["sites"] == ["a", "b"]
    assert set(entries[1]["task_metrics"]) == {"liver", "spleen"}
    assert entries[0]["model_hash"] != entries[1]["model_hash"]
    assert sorted(p.name for p in (state / "checkpoints").glob("*.npz")) == [
        "round-0001.npz",
        "round-0002.npz",
    ]


def test_supernode_without_the_project_ca_is_refused(deployment: Deployment) -> None:
    command = supernode_command(
        deployment.address,
        None,
        deployment.certs / "a.key",
        {"site": "x", "tasks": "liver"},
        free_port(),
        max_retries=1,
    )
    node = Process(command, deployment.env, deployment.tmp)
    try:
        assert node.wait_for("CERTIFICATE_VERIFY_FAILED", 60), node.text
    finally:
        node.kill()
