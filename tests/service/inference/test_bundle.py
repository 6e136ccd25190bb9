from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, write_checksums

from .conftest import threshold_manifest


def test_round_trip(make_bundle: Callable[..., Path]) -> None:
    bundle = ModelBundle.load(make_bundle())
    assert bundle.manifest.name == "threshold-test"
    assert bundle.manifest.num_classes == 2
    assert bundle.manifest.label_table().names == ["lesion"]
    assert len(bundle.checksum) == 64


def test_changed_model_is_refused(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle()
    data = bytearray((path / "model.onnx").read_bytes())
    data[-5] ^= 0xFF
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelBundleError, match=r"model\.onnx: checksum does not match"):
        ModelBundle.load(path)


def test_edited_manifest_is_refused(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["spacing"] = [1.0, 1.0, 1.0]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelBundleError, match=r"manifest\.json: checksum does not match"):
        ModelBundle.load(path)


def test_invalid_manifest_names_the_field(make_bundle: Callable[..., Path]) -> None:
    path = make_bundle()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["patch_size"] = [16, 0, 16]
    (path / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(path)  # a consistent but invalid bundle
    with pytest.raises(ModelBundleError, match="patch_size"):
        ModelBundle.load(path)


def test_missing_files(make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ModelBundleError, match="bundle folder not found"):
        ModelBundle.load(tmp_path / "nothing")
    path = make_bundle()
    (path / "checksums.sha256").unlink()
    with pytest.raises(ModelBundleError, match=r"checksums\.sha256 missing"):
        ModelBundle.load(path)


def test_manifest_validation() -> None:
    with pytest.raises(ValueError, match="largest_component names unknown labels"):
        threshold_manifest(postprocessing={"largest_component": ["spleen"]})
    with pytest.raises(ValueError, match="onnx_opset"):
        threshold_manifest(onnx_opset=11)
    with pytest.raises(ValueError, match=r"high .* must exceed low"):
        threshold_manifest(normalisation={"kind": "ct-window", "low": 5, "high": 1})
