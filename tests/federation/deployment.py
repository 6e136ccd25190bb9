"""Real Flower processes on loopback for the deployment tests (process groups, hard timeouts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from federation.certs import create_pilot_certificates
from federation.deploy import (
    SuperLinkSpec,
    flower_config_toml,
    flower_executable,
    superlink_command,
    supernode_command,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flower_env(home: Path) -> dict[str, str]:
    """Environment with the venv's bin first on PATH (SuperLink starts flower-superexec)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLWR_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Process:
    """A subprocess in its own process group whose output is collected by a thread."""

    def __init__(self, command: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            list(command),
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text:
                return True
            if self.popen.poll() is not None:
                time.sleep(0.5)
                return needle in self.text
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)


APP = Path(__file__).resolve().parents[2] / "federation" / "app"


class Pilot:
    """A TLS SuperLink with SuperNode authentication and registered phantom sites on loopback.

    ``database`` keeps the SuperLink's state (runs, registered site keys) in a SQLite file, so
    the SuperLink can be killed and started again with the same state on the same port.
    """

    def __init__(
        self, tmp: Path, sites: dict[str, tuple[str, int]], database: Path | None = None
    ) -> None:
        self.tmp = tmp
        self.sites = sites
        self.database = database
        self.certs = tmp / "certs"
        create_pilot_certificates(self.certs, sites=list(sites))
        home = tmp / "flwr-home"
        home.mkdir()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        (home / "config.toml").write_text(
            flower_config_toml("pilot", self.address, self.certs / "ca.crt")
        )
        self.env = flower_env(home)
        self.superlink: Process | None = None
        self.nodes: dict[str, Process] = {}
        self.runs: list[Process] = []

    def start_superlink(self) -> Process:
        """Start the SuperLink and wait until it listens."""
        spec = SuperLinkSpec(self.certs, host="127.0.0.1", port=self.port, database=self.database)
        self.superlink = Process(superlink_command(spec), self.env, self.tmp)
        assert self.superlink.wait_for("Uvicorn running", 60), self.superlink.text
        return self.superlink

    def flwr(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's ``flwr`` CLI against this SuperLink (bounded)."""
        return subprocess.run(
            [flower_executable("flwr"), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start_sites(self, node_config: Mapping[str, Mapping[str, object]] | None = None) -> None:
        """Register every site's key and start its SuperNode (``node_config``: extra keys)."""
        for name, (task, index) in self.sites.items():
            register = self.flwr("supernode", "register", str(self.certs / f"{name}.pub"))
            assert "registered successfully" in register.stdout, register.stdout + register.stderr
            config = {"site": name, "tasks": task, "phantom-site": index, "cases": 1}
            config |= (node_config or {}).get(name, {})
            command = supernode_command(
                self.address, self.certs / "ca.crt", self.certs / f"{name}.key", config, free_port()
            )
            self.nodes[name] = Process(command, self.env, self.tmp)

    def run(self, run_config: str) -> Process:
        """``flwr run`` of the fedseg app, streaming the ServerApp's log."""
        command = [flower_executable("flwr"), "run", str(APP), "pilot", "--stream"]
        process = Process([*command, "--run-config", run_config], self.env, self.tmp)
        self.runs.append(process)
        return process

    def close(self) -> None:
        """Kill every process this pilot started."""
        for process in [*self.runs, *self.nodes.values()]:
            process.kill()
        if self.superlink is not None:
            self.superlink.kill()
