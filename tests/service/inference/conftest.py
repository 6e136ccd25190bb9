"""Tiny ONNX networks built with onnx.helper, so the service's engine is tested without torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.inference.bundle import save_bundle
from service.inference.manifest import Manifest, label_dicts
from service.labels.registry import get_table
from service.qc.enum import BodyRegion


def pointwise_model(weights: np.ndarray, bias: np.ndarray) -> bytes:
    """A 1×1×1 Conv3d: logits[k] = weights[k] · input + bias[k]; dynamic batch and size."""
    k, c = weights.shape
    w = numpy_helper.from_array(weights.reshape(k, c, 1, 1, 1).astype(np.float32), "W")
    b = numpy_helper.from_array(bias.astype(np.float32), "B")
    node = helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1, 1])
    graph = helper.make_graph(
        [node],
        "pointwise",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", c, "x", "y", "z"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", k, "x", "y", "z"])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def threshold_manifest(task: str = "pet-lesion", **overrides: object) -> Manifest:
    table = get_table(task)
    data: dict[str, object] = {
        "name": "threshold-test",
        "version": "0.0.1",
        "task": task,
        "modality": "PT",
        "labels": label_dicts(table),
        "spacing": (2.0, 2.0, 2.0),
        "normalisation": {"kind": "ct-window", "low": 0.0, "high": 10.0},
        "patch_size": (16, 16, 16),
        "overlap": 0.5,
        "provenance": {"created": "2026-11-22"},
        "onnx_opset": 17,
    }
    data.update(overrides)
    # A test model claims every region, no limits and only the modality check (its tiny test
    # images hold no body): the selection step's tests set their own.
    data.setdefault(
        "intended_use",
        {
            "modality": data["modality"],
            "body_regions": [region.value for region in BodyRegion],
            "training_data": {"kind": "synthetic", "cases": 0, "sources": ["a test fixture"]},
            "checks": ["modality"],
        },
    )
    return Manifest.model_validate(data)


@pytest.fixture()
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Write a bundle whose network labels voxels with normalised value above 0.45."""

    def make(manifest: Manifest | None = None, name: str = "bundle") -> Path:
        manifest = manifest or threshold_manifest()
        # background logit 0.45 - x, lesion logit x - 0.45: lesion where x > 0.45 (midway 1→8)
        model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
        bundle = save_bundle(tmp_path / name, model, manifest)
        return bundle.path

    return make
