"""The layers point one way: federation → training → service.

Each check imports every module of a layer in a fresh interpreter and inspects ``sys.modules``,
so an indirect import (service → some helper → torch) is caught too.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "service": ["torch", "monai", "flwr", "training", "federation"],
    "training": ["flwr", "federation"],
}


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        # Alembic's migration scripts only run inside alembic; importing them alone fails.
        if ".migrations" not in info.name:
            names.append(info.name)
    return names


def _loaded_after_import(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    modules = _modules(layer)
    assert len(modules) > 3, f"found too few modules in {layer}: {modules}"
    loaded = _loaded_after_import(modules)
    leaked = sorted(set(FORBIDDEN[layer]) & loaded)
    assert not leaked, f"importing {layer} loaded {leaked}"


def test_cli_help_needs_no_torch() -> None:
    # The service-side CLI must start without torch: building the parser may only load the
    # training commands' registration modules, which import torch lazily.
    code = (
        "import sys\nfrom service.cli.main import build_parser\nbuild_parser()\n"
        "print('torch' in sys.modules, 'monai' in sys.modules, 'flwr' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False", "False"]


def test_detector_catches_a_violation(tmp_path: Path) -> None:
    # The check above must be able to fail: a module importing torch shows up in sys.modules.
    code = "import json, sys, torch\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch" in json.loads(out.stdout)
