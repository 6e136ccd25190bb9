"""Model bundles: a folder with ``model.onnx``, ``manifest.json`` and ``checksums.sha256``.

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
from service.inference.manifest import Manifest

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


def write_checksums(folder: Path) -> Path:
    """Write ``checksums.sha256`` (``sha256sum`` format) for the bundle's files."""
    lines = [f"{sha256(folder / name)}  {name}" for name in _COVERED]
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
        """The ONNX network."""
        return self.path / MODEL_FILE

    @property
    def checksum(self) -> str:
        """SHA-256 of the model file (identifies the exact weights)."""
        return _read_checksums(self.path)[MODEL_FILE]

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
        for name in _COVERED:
            file = folder / name
            if not file.is_file():
                raise ModelBundleError(f"{folder}: {name} missing")
            if name not in sums:
                raise ModelBundleError(f"{folder}: {CHECKSUM_FILE} has no entry for {name}")
            if sha256(file) != sums[name]:
                raise ModelBundleError(
                    f"{file}: checksum does not match {CHECKSUM_FILE}; the file was changed or "
                    "damaged. Re-copy or re-export the bundle."
                )
        try:
            manifest = Manifest.model_validate(json.loads((folder / MANIFEST_FILE).read_text()))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ModelBundleError(f"{folder / MANIFEST_FILE}: invalid manifest: {exc}") from exc
        return cls(path=folder, manifest=manifest)


def save_bundle(folder: Path, model_bytes: bytes, manifest: Manifest) -> ModelBundle:
    """Write a bundle (network, manifest, checksums) and load it back verified."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(model_bytes)
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    write_checksums(folder)
    return ModelBundle.load(folder)
