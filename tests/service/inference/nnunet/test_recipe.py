"""The manifest's nnunet block: typed, validated, and errors that name the file and field."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, write_checksums
from service.inference.manifest import Runtime
from service.inference.nnunet.recipe import NnunetRecipe, NormalisationScheme, RecipeError

from .conftest import manifest_data, recipe_block, write_bundle

_ONNX = b"not really onnx: the recipe tests never run the network"


def _fold() -> dict[str, Any]:
    return {
        "fold": 0,
        "onnx": "Dataset901_Tiny/fold_0.onnx",
        "onnx_sha256": hashlib.sha256(_ONNX).hexdigest(),
        "checkpoint": "checkpoint_final.pth",
        "checkpoint_sha256": "0" * 64,
    }


def _bundle(tmp_path: Path, block: dict[str, Any]) -> Path:
    return write_bundle(tmp_path / "bundle", {"Dataset901_Tiny/fold_0.onnx": _ONNX}, block)


def test_valid_block_loads_typed_and_round_trips(tmp_path: Path) -> None:
    bundle = ModelBundle.load(_bundle(tmp_path, recipe_block([_fold()])))
    manifest = bundle.manifest
    assert manifest.runtime is Runtime.NNUNET_V2
    assert manifest.nnunet is not None
    model = manifest.nnunet.models[0]
    assert model.normalisation[0].scheme is NormalisationScheme.CT
    assert model.transpose_forward == (0, 2, 1)
    assert model.label_map == {1: 1, 2: 2, 3: 3}
    assert bundle.fold_paths() == [[bundle.path / "Dataset901_Tiny" / "fold_0.onnx"]]
    again = json.loads(manifest.model_dump_json())
    assert NnunetRecipe.from_dict(again["nnunet"]) == manifest.nnunet


def _edit(
    block: dict[str, Any], path: list[str | int], value: Any, delete: bool = False
) -> dict[str, Any]:
    block = copy.deepcopy(block)
    target: Any = block
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return block


@pytest.mark.parametrize(
    ("path", "value", "delete", "message"),
    [
        (
            ["models", 0, "tile_stepsize"],
            0.5,
            False,
            r"nnunet\.models\[0\]: unknown field\(s\) tile_stepsize",
        ),
        (
            ["models", 0, "patch_size"],
            None,
            True,
            r"nnunet\.models\[0\]: missing field\(s\) patch_size",
        ),
        (
            ["models", 0, "normalisation", 0, "scheme"],
            "FancyNormalization",
            False,
            r"models\[0\]\.normalisation\[0\]\.scheme: 'FancyNormalization' is not supported",
        ),
        (
            ["models", 0, "configuration"],
            "3d_cascade_fullres",
            False,
            r"nnunet\.models\[0\]: .*cascade",
        ),
        (
            ["models", 0, "patch_size"],
            [16, 32],
            False,
            r"nnunet\.models\[0\]\.patch_size: expected 3",
        ),
        (["models", 0, "label_map", "7"], 1, False, r"label_map maps 7"),
        (["recipe_version"], 2, False, r"nnunet\.recipe_version: 2 is not supported"),
        (["models", 0, "folds", 0, "onnx"], "../outside.onnx", False, r"folds\[0\]: onnx"),
    ],
    ids=["unknown", "missing", "scheme", "cascade", "2d", "label-map", "version", "path"],
)
def test_bad_block_names_file_and_field(
    tmp_path: Path, path: list[str | int], value: Any, delete: bool, message: str
) -> None:
    block = _edit(recipe_block([_fold()]), path, value, delete)
    folder = _bundle(tmp_path, block)
    with pytest.raises(ModelBundleError, match=message) as caught:
        ModelBundle.load(folder)
    assert str(folder / "manifest.json") in str(caught.value)


def test_fedseg_recipe_fields_are_refused_in_an_nnunet_bundle(tmp_path: Path) -> None:
    folder = _bundle(tmp_path, recipe_block([_fold()]))
    data = json.loads((folder / "manifest.json").read_text())
    data["patch_size"] = [16, 16, 16]
    (folder / "manifest.json").write_text(json.dumps(data))
    write_checksums(folder)
    with pytest.raises(ModelBundleError, match=r"remove the field.*patch_size"):
        ModelBundle.load(folder)


def test_labels_without_a_producing_model_are_refused(tmp_path: Path) -> None:
    block = _edit(recipe_block([_fold()]), ["models", 0, "label_map"], {"1": 1, "2": 2})
    with pytest.raises(ModelBundleError, match=r"label number\(s\) \[3\].*no model"):
        ModelBundle.load(_bundle(tmp_path, block))


def test_a_changed_fold_file_is_refused(tmp_path: Path) -> None:
    folder = _bundle(tmp_path, recipe_block([_fold()]))
    (folder / "Dataset901_Tiny" / "fold_0.onnx").write_bytes(b"other weights")
    with pytest.raises(ModelBundleError, match=r"fold_0\.onnx: checksum does not match"):
        ModelBundle.load(folder)
    write_checksums(folder)  # consistent checksums, but not the manifest's onnx_sha256
    with pytest.raises(ModelBundleError, match=r"folds\[0\]\.onnx_sha256"):
        ModelBundle.load(folder)


def test_a_missing_fold_file_is_refused(tmp_path: Path) -> None:
    folder = _bundle(tmp_path, recipe_block([_fold()]))
    (folder / "Dataset901_Tiny" / "fold_0.onnx").unlink()
    with pytest.raises(ModelBundleError, match=r"fold_0\.onnx missing"):
        ModelBundle.load(folder)


def test_manifest_without_the_block_is_refused() -> None:
    data = manifest_data(recipe_block([_fold()]))
    del data["nnunet"]
    from pydantic import ValidationError

    from service.inference.manifest import Manifest

    with pytest.raises(ValidationError, match='needs the "nnunet" block'):
        Manifest.model_validate(data)


def test_recipe_constructor_validates() -> None:
    model = NnunetRecipe.from_dict(recipe_block([_fold()])).models[0]
    with pytest.raises(RecipeError, match="transpose_backward is not the inverse"):
        type(model)(**{**model.__dict__, "transpose_backward": (0, 1, 2)})
