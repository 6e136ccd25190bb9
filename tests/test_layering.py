"""The layers point one way: federation → training → service; inside the server, toward the API.

Each check imports every module of a layer in a fresh interpreter and inspects ``sys.modules``,
so an indirect import (service → some helper → torch) is caught too.

Inside ``service``, the HTTP API (``service.api``) and the composition root
(``service.server``) sit on top: the jobs, delivery, DIMSE, storage, database, auth and DICOMweb
packages serve them and never import them.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "service": ["torch", "monai", "flwr", "training", "federation"],
    "training": ["flwr", "federation"],
}

#: Server packages below the API and the composition root.
SERVER_TOP = ("service.api", "service.server")
SERVER_PARTS = (
    "service.jobs",
    "service.delivery",
    "service.dimse",
    "service.storage",
    "service.db",
    "service.auth",
    "service.dicomweb",
)


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        # Alembic's migration scripts only run inside alembic; importing them alone fails.
        if ".migrations" not in info.name:
            names.append(info.name)
    return names


def _loaded_modules(modules: list[str], root: Path = ROOT) -> set[str]:
    """Every module name in ``sys.modules`` after importing ``modules`` from ``root``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _loaded_after_import(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in _loaded_modules(modules)}


def _server_top_loaded(package: str, root: Path = ROOT) -> list[str]:
    """The API or composition-root modules that importing all of ``package`` loads."""
    modules = _modules_under(package, root)
    loaded = _loaded_modules(modules, root)
    return sorted(m for m in loaded for top in SERVER_TOP if m == top or m.startswith(top + "."))


def _modules_under(package: str, root: Path = ROOT) -> list[str]:
    folder = root / package.replace(".", "/")
    names = [package]
    for info in pkgutil.walk_packages([str(folder)], prefix=f"{package}."):
        if ".migrations" not in info.name:
            names.append(info.name)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    modules = _modules(layer)
    assert len(modules) > 3, f"found too few modules in {layer}: {modules}"
    loaded = _loaded_after_import(modules)
    leaked = sorted(set(FORBIDDEN[layer]) & loaded)
    assert not leaked, f"importing {layer} loaded {leaked}"


@pytest.mark.parametrize("package", SERVER_PARTS)
def test_server_parts_do_not_import_the_api(package: str) -> None:
    # The API and service.server compose these packages; an import back up makes a cycle.
    assert (ROOT / package.replace(".", "/")).is_dir(), f"{package} moved: update SERVER_PARTS"
    leaked = _server_top_loaded(package)
    assert not leaked, f"importing {package} loaded {leaked}"


def test_api_routers_import_no_other_router() -> None:
    # One router per resource: what two routers share lives beside them in service.api
    # (the jobs router once imported the STOW-RS body reader from the DICOMweb router).
    folder = ROOT / "service" / "api" / "routers"
    # dicomweb.py serves WADO-RS metadata with the frames router's DICOM JSON builder.
    allowed = {("dicomweb", "service.api.routers.wado_frames")}
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "service.api.routers"
            ):
                found.append((path.stem, node.module))
    assert len(list(folder.glob("*.py"))) > 5
    assert set(found) <= allowed, sorted(set(found) - allowed)


def test_server_layering_check_finds_an_upward_import(tmp_path: Path) -> None:
    # The check above must be able to fail: a copy of a package with one module importing the
    # API is reported.
    shutil.copytree(ROOT / "service", tmp_path / "service", ignore=_no_caches)
    (tmp_path / "service" / "jobs" / "upward.py").write_text("import service.api.state\n")
    assert "service.api.state" in _server_top_loaded("service.jobs", tmp_path)


def _no_caches(_: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__"]


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
