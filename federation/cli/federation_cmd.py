"""``fedseg federation certs|superlink|supernode|run|status``: operate a federated deployment."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

from federation.certs import create_pilot_certificates
from federation.deploy import (
    SuperLinkSpec,
    flower_executable,
    superlink_command,
    supernode_command,
)
from federation.errors import FederationError
from federation.processes import run_foreground
from federation.registry import ModelRegistry, RegistryEntry

APP_DIR = Path(__file__).resolve().parents[1] / "app"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``federation`` subcommand and its actions."""
    parser = subparsers.add_parser(
        "federation",
        help="federated training: certificates, SuperLink, SuperNode, runs, registry",
        description="Operate a fedseg federation on Flower (TLS, authenticated sites).",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    certs = actions.add_parser("certs", help="create a pilot CA, server certificate, site keys")
    certs.add_argument("out", type=Path, help="folder to write into")
    certs.add_argument("--host", action="append", default=None, help="server name/IP (repeat)")
    certs.add_argument("--site", action="append", default=[], help="site key pair (repeat)")
    certs.add_argument(
        "--days", type=int, default=365, help="certificate validity in days (default: %(default)s)"
    )
    certs.set_defaults(handler=run_certs)

    link = actions.add_parser("superlink", help="start the SuperLink (TLS, node auth)")
    link.add_argument("--certs", type=Path, required=True, help="folder from `certs`")
    link.add_argument(
        "--host",
        default="0.0.0.0",
        help="address SuperNodes connect to (default: all, %(default)s)",
    )
    link.add_argument(
        "--port",
        type=int,
        default=9092,
        help="Fleet API port for SuperNodes (default: %(default)s)",
    )
    link.add_argument("--database", type=Path, help="SuperLink state database (survives restart)")
    link.set_defaults(handler=run_superlink)

    node = actions.add_parser("supernode", help="start this site's SuperNode (dials out only)")
    node.add_argument("--superlink", required=True, help="host:port of the SuperLink")
    node.add_argument("--ca", type=Path, required=True, help="the project CA certificate")
    node.add_argument("--key", type=Path, required=True, help="this site's private key")
    node.add_argument("--site", required=True, help="site name (no patient data)")
    node.add_argument(
        "--tasks",
        default="",
        help="comma-separated labels this site holds (U-Net; nnU-Net reads them from --data)",
    )
    node.add_argument(
        "--data",
        default="phantom",
        help="case folder (nnU-Net: a `dataset build --format nnunet` folder), or 'phantom'",
    )
    node.add_argument(
        "--work-dir", default="", help="nnU-Net: folder for the preprocessed cases (cached)"
    )
    node.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="nnU-Net: share of cases held out for the federated evaluation (default: %(default)s)",
    )
    node.add_argument("--port", type=int, default=9094, help="local ClientApp I/O port")
    node.add_argument("--phantom-site", type=int, default=1, help="phantom scanner (pilots)")
    node.add_argument("--cases", type=int, default=1000, help="at most this many cases")
    node.set_defaults(handler=run_supernode)

    start = actions.add_parser("run", help="submit the fedseg Flower app to a SuperLink")
    start.add_argument("connection", help="SuperLink connection name in $FLWR_HOME/config.toml")
    start.add_argument("--run-config", default="", help="'key=value ...' overrides")
    start.set_defaults(handler=run_app)

    status = actions.add_parser("status", help="registered global models of a run")
    status.add_argument("state_dir", type=Path, help="the run's state-dir")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=run_status)


def run_certs(args: argparse.Namespace) -> int:
    """Write the pilot certificates."""
    hosts = args.host or ["localhost", "127.0.0.1", "::1"]
    made = create_pilot_certificates(args.out, hosts, args.site, args.days)
    sys.stdout.write(f"CA {made.ca_certificate}\nserver {made.server_certificate}\n")
    for site, (private, public) in made.supernode_keys.items():
        sys.stdout.write(f"site {site}: give {private} to the site, register {public}\n")
    return 0


def _exec(command: list[str]) -> int:
    """Run a Flower command in the foreground; a stop signal stops everything it started."""
    env = dict(os.environ)
    # SuperLink starts flower-superexec from PATH: put this environment's bin first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return run_foreground(command, env)


def run_superlink(args: argparse.Namespace) -> int:
    """Run the SuperLink in the foreground."""
    spec = SuperLinkSpec(args.certs, args.host, args.port, args.database)
    return _exec(superlink_command(spec))


def run_supernode(args: argparse.Namespace) -> int:
    """Run this site's SuperNode in the foreground."""
    config: dict[str, object] = {
        "site": args.site,
        # The ClientApp runs in another working directory: folders are passed absolute.
        "data": args.data if args.data == "phantom" else str(Path(args.data).resolve()),
        "phantom-site": args.phantom_site,
        "cases": args.cases,
        "validation-fraction": args.validation_fraction,
    }
    if args.tasks:
        config["tasks"] = args.tasks
    if args.work_dir:
        config["work-dir"] = str(Path(args.work_dir).resolve())
    return _exec(supernode_command(args.superlink, args.ca, args.key, config, args.port))


def run_app(args: argparse.Namespace) -> int:
    """``flwr run <fedseg app> <connection> --stream``, then each round's metrics."""
    command = [flower_executable("flwr"), "run", str(APP_DIR), args.connection, "--stream"]
    if args.run_config:
        command += ["--run-config", args.run_config]
    started = datetime.now(UTC).replace(microsecond=0)
    code = _exec(command)
    sys.stdout.write(round_summary(run_state_dir(args.run_config), started))
    return code


def run_state_dir(run_config: str) -> Path:
    """The run's ``state-dir``: from ``--run-config``, else the app's default."""
    # Imported here: `fedseg --help` builds this parser and must not load Flower.
    from flwr.common.config import parse_config_args

    overrides = parse_config_args([run_config]) if run_config else {}
    default = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    return Path(str(overrides.get("state-dir", default["config"]["state-dir"])))


def round_summary(state_dir: Path, since: datetime | None = None) -> str:
    """Each round registered in ``state_dir`` (since ``since``), one line per round."""
    if not (state_dir / "registry.jsonl").is_file():
        return (
            f"no round registry at {state_dir}: the ServerApp writes it on the SuperLink's "
            "host; run `fedseg federation status STATE_DIR` there\n"
        )
    entries = [
        e
        for e in ModelRegistry(state_dir).entries()
        if since is None or not e.created or _created(e.created) >= since
    ]
    if not entries:
        return f"no round finished in this run ({state_dir}/registry.jsonl)\n"
    return f"rounds of this run, mean Dice per task ({state_dir}):\n" + "".join(
        _round_lines(entries)
    )


def _created(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")


def _round_lines(entries: list[RegistryEntry]) -> list[str]:
    lines = []
    for e in entries:
        metrics = " ".join(f"{k}={v:.3f}" for k, v in sorted(e.task_metrics.items()))
        promotion = ""
        if e.promotion:
            verdict = "promoted" if e.promotion.get("promoted") else "not promoted"
            promotion = f"  {verdict} as {e.promotion.get('bundle_version')}"
        lines.append(
            f"{e.version}  round {e.server_round}  sites {','.join(e.sites)}  {metrics}"
            f"{promotion}\n"
        )
    return lines


def run_status(args: argparse.Namespace) -> int:
    """Print the registry of a run."""
    entries = ModelRegistry(args.state_dir).entries()
    if not entries:
        raise FederationError(f"{args.state_dir}: no registered round yet")
    if args.json:
        sys.stdout.write(json.dumps([e.__dict__ for e in entries], indent=2) + "\n")
        return 0
    sys.stdout.write("".join(_round_lines(entries)))
    return 0
