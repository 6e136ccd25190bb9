"""Model bundles: a folder with ``model.onnx``, ``manifest.json`` and ``checksums.sha256``.

An nnU-Net bundle (``"runtime": "nnunet-v2"``) holds one ONNX file per model and fold instead of
``model.onnx``, at the relative paths its ``nnunet`` block names; the checksums cover them and
the manifest, and each file must also match the ``onnx_sha256`` the manifest records.

Bundles are the only thing passed from training to the service. Loading verifies the checksums
and the manifest before any voxel is touched, so a truncated copy or an edited manifest is
refused instead of producing silently wrong contours.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from service.errors import ModelBundleError
from service.inference.manifest import Manifest, Runtime

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CHECKSUM_FILE = "checksums.sha256"
_COVERED = (MODEL_FILE, MANIFEST_FILE)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(manifest: Manifest) -> tuple[str, ...]:
    """The files a bundle's checksums cover: the manifest and its network file(s)."""
    if manifest.nnunet is None:
        return _COVERED
    onnx = [fold.onnx for model in manifest.nnunet.models for fold in model.folds]
    return (MANIFEST_FILE, *dict.fromkeys(onnx))


def _parse_manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelBundleError(f"{path}: invalid manifest: {exc}") from exc


def write_checksums(folder: Path) -> Path:
    """Write ``checksums.sha256`` (``sha256sum`` format) for the bundle's files."""
    names: tuple[str, ...] = _COVERED
    if (folder / MANIFEST_FILE).is_file():
        data = json.loads((folder / MANIFEST_FILE).read_text())
        if isinstance(data, dict) and data.get("runtime") == Runtime.NNUNET_V2.value:
            # Read leniently: the manifest is validated by load(), which names what is wrong.
            onnx = [
                str(fold.get("onnx"))
                for model in data.get("nnunet", {}).get("models", [])
                for fold in model.get("folds", [])
            ]
            names = (MANIFEST_FILE, *dict.fromkeys(o for o in onnx if (folder / o).is_file()))
    lines = [f"{sha256(folder / name)}  {name}" for name in names]
    path = folder / CHECKSUM_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        raise ModelBundleError(f"{folder}: {CHECKSUM_FILE} missing; the bundle is incomplete")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2:
            raise ModelBundleError(f"{path}:{number}: expected '<sha256>  <file>'")
        sums[parts[1].lstrip("*")] = parts[0]
    return sums


@dataclass(frozen=True)
class ModelBundle:
    """A verified model bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """The ONNX network (fedseg's own recipe; an nnU-Net bundle has :meth:`fold_paths`)."""
        return self.path / MODEL_FILE

    def fold_paths(self) -> list[list[Path]]:
        """An nnU-Net bundle's ONNX files: per model, per fold, in manifest order."""
        recipe = self.manifest.nnunet
        if recipe is None:
            return []
        return [[self.path / fold.onnx for fold in model.folds] for model in recipe.models]

    @property
    def checksum(self) -> str:
        """SHA-256 identifying the exact weights.

        The model file's, or for an nnU-Net bundle the manifest's (which records every fold's
        ONNX sha256).
        """
        name = MODEL_FILE if self.manifest.nnunet is None else MANIFEST_FILE
        return _read_checksums(self.path)[name]

    @classmethod
    def load(cls, path: Path | str) -> ModelBundle:
        """Load and verify a bundle folder.

        Raises
        ------
        ModelBundleError
            If a file is missing, a checksum does not match, or the manifest is invalid.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ModelBundleError(f"{folder}: model bundle folder not found")
        sums = _read_checksums(folder)
        _verify(folder, MANIFEST_FILE, sums)
        manifest = _parse_manifest(folder / MANIFEST_FILE)
        for name in bundle_files(manifest):
            _verify(folder, name, sums)
        if manifest.nnunet is not None:
            for i, model in enumerate(manifest.nnunet.models):
                for j, fold in enumerate(model.folds):
                    if sums[fold.onnx] != fold.onnx_sha256:
                        raise ModelBundleError(
                            f"{folder / fold.onnx}: sha256 differs from the manifest's "
                            f"nnunet.models[{i}].folds[{j}].onnx_sha256; re-import the model"
                        )
        return cls(path=folder, manifest=manifest)


def _verify(folder: Path, name: str, sums: dict[str, str]) -> None:
    file = folder / name
    if not file.resolve().is_relative_to(folder.resolve()):
        raise ModelBundleError(f"{folder}: {name} lies outside the bundle folder")
    if not file.is_file():
        raise ModelBundleError(f"{folder}: {name} missing")
    if name not in sums:
        raise ModelBundleError(f"{folder}: {CHECKSUM_FILE} has no entry for {name}")
    if sha256(file) != sums[name]:
        raise ModelBundleError(
            f"{file}: checksum does not match {CHECKSUM_FILE}; the file was changed or "
            "damaged. Re-copy or re-export the bundle."
        )


def save_bundle(folder: Path, model_bytes: bytes, manifest: Manifest) -> ModelBundle:
    """Write a bundle (network, manifest, checksums) and load it back verified."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(model_bytes)
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    write_checksums(folder)
    return ModelBundle.load(folder)
