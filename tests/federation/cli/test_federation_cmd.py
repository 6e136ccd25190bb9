"""``fedseg federation certs`` and ``status`` through the real argument parser."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from federation.cli import federation_cmd
from federation.errors import FederationError
from federation.registry import ModelRegistry, RegistryEntry


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fedseg")
    federation_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_certs_command_writes_ca_server_and_site_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["federation", "certs", str(tmp_path), "--host", "localhost", "--site", "a"])
    assert args.handler(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.key", "a.pub", "ca.crt", "ca.key", "server.key", "server.pem"]
    assert "register" in capsys.readouterr().out


def test_status_lists_registered_rounds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["federation", "status", str(tmp_path)])
    with pytest.raises(FederationError, match="no registered round"):
        args.handler(args)
    ModelRegistry(tmp_path).register(
        RegistryEntry("r0001-abc", 1, "abc", ["a", "b"], {}, {"liver": 0.5})
    )
    assert args.handler(args) == 0
    assert "r0001-abc  round 1  sites a,b  liver=0.500\n" in capsys.readouterr().out
    ModelRegistry(tmp_path).register(
        RegistryEntry(
            "r0001-abc",
            1,
            "abc",
            ["a", "b"],
            {},
            {"liver": 0.5},
            promotion={"promoted": True, "bundle_version": "1.2.0"},
        )
    )
    assert args.handler(args) == 0
    assert "liver=0.500  promoted as 1.2.0" in capsys.readouterr().out


def test_run_state_dir_comes_from_the_run_config_or_the_app_default() -> None:
    assert federation_cmd.run_state_dir('num-rounds=2 state-dir="/srv/fl"') == Path("/srv/fl")
    assert federation_cmd.run_state_dir("") == Path("/var/lib/fedseg/federation")


def test_run_summary_lists_this_runs_rounds(tmp_path: Path) -> None:
    missing = federation_cmd.round_summary(tmp_path / "elsewhere")
    assert "no round registry" in missing and "federation status" in missing
    registry = ModelRegistry(tmp_path)
    old = {"created": "2026-01-01T10:00:00+0000"}
    registry.register(RegistryEntry("r0003-old", 3, "old", ["a"], {}, {"liver": 0.1}, **old))
    for n, dice in ((1, 0.42), (2, 0.61)):
        registry.register(RegistryEntry(f"r000{n}-new", n, "h", ["a", "b"], {},
                                        {"liver": dice, "spleen": 0.3},
                                        created="2026-12-02T10:00:00+0000"))  # fmt: skip
    since = datetime(2026, 12, 1, tzinfo=UTC)
    lines = federation_cmd.round_summary(tmp_path, since).splitlines()
    assert lines[0].startswith("rounds of this run, mean Dice per task")
    assert lines[1:] == [
        "r0001-new  round 1  sites a,b  liver=0.420 spleen=0.300",
        "r0002-new  round 2  sites a,b  liver=0.610 spleen=0.300",
    ]
