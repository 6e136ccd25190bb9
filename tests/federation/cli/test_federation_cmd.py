"""``fedseg federation certs`` and ``status`` through the real argument parser."""

from __future__ import annotations

import argparse
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
