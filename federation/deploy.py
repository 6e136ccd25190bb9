"""Command lines of the Flower processes of a fedseg deployment (TLS and node auth on).

The SuperLink listens on one port for the Fleet and Control APIs; SuperNodes only dial out to
it. Runtime dependency installation is disabled: sites run the app from their installed fedseg.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from federation.errors import FederationError


def flower_executable(name: str) -> str:
    """Path of a Flower console script, preferring the running interpreter's environment."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FederationError(f"{name} not found; install fedseg with the federation extra")
    return found


@dataclass(frozen=True)
class SuperLinkSpec:
    """Where and how the SuperLink listens."""

    certificates: Path
    host: str = "0.0.0.0"
    port: int = 9092
    database: Path | None = None
    node_auth: bool = True


def superlink_command(spec: SuperLinkSpec) -> list[str]:
    """``flower-superlink`` over TLS with the pilot certificates (``ca.crt``, ``server.*``)."""
    command = [
        flower_executable("flower-superlink"),
        "--ssl-ca-certfile",
        str(spec.certificates / "ca.crt"),
        "--ssl-certfile",
        str(spec.certificates / "server.pem"),
        "--ssl-keyfile",
        str(spec.certificates / "server.key"),
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--disable-runtime-dependency-installation",
    ]
    if spec.database is not None:
        command += ["--database", str(spec.database)]
    if spec.node_auth:
        command.append("--enable-supernode-auth")
    return command


def node_config_string(config: Mapping[str, object]) -> str:
    """``--node-config`` value: strings quoted, numbers and booleans as TOML literals."""
    parts = []
    for key, value in config.items():
        if isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        elif isinstance(value, int | float):
            parts.append(f"{key}={value}")
        else:
            parts.append(f'{key}="{value}"')
    return " ".join(parts)


def supernode_command(
    superlink: str,
    ca_certificate: Path | None,
    private_key: Path | None,
    node_config: Mapping[str, object],
    clientappio_port: int = 9094,
    max_retries: int | None = None,
) -> list[str]:
    """``flower-supernode`` dialling ``superlink`` (host:port) and trusting only our CA."""
    command = [flower_executable("flower-supernode"), "--superlink", superlink]
    if ca_certificate is not None:
        command += ["--root-certificates", str(ca_certificate)]
    if private_key is not None:
        command += ["--auth-supernode-private-key", str(private_key)]
    command += [
        "--node-config",
        node_config_string(node_config),
        "--port",
        str(clientappio_port),
    ]
    if max_retries is not None:
        command += ["--max-retries", str(max_retries), "--max-wait-time", "20"]
    return command


def flower_config_toml(name: str, address: str, ca_certificate: Path) -> str:
    """A Flower configuration file (``$FLWR_HOME/config.toml``) naming one TLS SuperLink."""
    return (
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "{address}"\n'
        f'root-certificates = "{ca_certificate}"\n'
    )
