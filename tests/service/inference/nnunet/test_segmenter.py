"""The nnU-Net segmenter in the service: label maps of several models merged, store install."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, SessionOptions
from service.inference.store import ModelStore

from .conftest import TinyModel, ct_volume, write_bundle


def test_later_models_overwrite_earlier_ones(tiny_model: TinyModel, tmp_path: Path) -> None:
    """Two models (the same network): the second maps nnU-Net label 3 to bundle label 1."""
    source = ModelBundle.load(tiny_model.bundle)
    block = json.loads(source.manifest.model_dump_json())["nnunet"]
    first = block["models"][0]
    second = {**first, "name": "second", "label_map": {"3": 1}, "postprocessing": []}
    block["models"] = [first, second]
    files = {f["onnx"]: (source.path / f["onnx"]).read_bytes() for f in first["folds"]}
    merged_bundle = ModelBundle.load(write_bundle(tmp_path / "merged", files, block))
    options = SessionOptions(device=Device.CPU)
    volume = ct_volume()
    single = open_segmenter(source, options).segment(volume).labels
    merged = open_segmenter(merged_bundle, options).segment(volume).labels
    assert (single == 3).any()
    expected = np.where(single == 3, 1, single)
    # The second model has no largest-component rule, so its label 3 keeps every component.
    second_runner = open_segmenter(merged_bundle, options).runners[1]  # type: ignore[attr-defined]
    raw = second_runner.predict(volume.array.transpose(2, 1, 0)[None], (4.0, 1.2, 1.2))
    expected[raw.transpose(2, 1, 0) == 3] = 1
    np.testing.assert_array_equal(merged, expected)


def test_store_installs_and_runs_an_nnunet_bundle(tiny_model: TinyModel, tmp_path: Path) -> None:
    store = ModelStore(roots=(tmp_path / "store",))
    installed = store.install(tiny_model.bundle)
    assert installed.fold_paths()[0][0].is_file()
    assert store.resolve("tiny-nnunet").path == installed.path
    assert len(installed.checksum) == 64


def test_fast_tiling_steps_by_three_quarters(tiny_model: TinyModel) -> None:
    segmenter = open_segmenter(
        ModelBundle.load(tiny_model.bundle), SessionOptions(device=Device.CPU)
    )
    segmenter.use_fast_tiling()
    assert segmenter.runners[0].settings.tile_step_size == 0.75  # type: ignore[attr-defined]
