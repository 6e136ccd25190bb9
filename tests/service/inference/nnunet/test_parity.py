"""fedseg's nnU-Net executor against nnUNetPredictor itself, end to end on the same NIfTI input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, Engine, SessionOptions
from tests.requirements import missing

from .conftest import TinyModel, ct_volume, reference_labels


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


@pytest.mark.parametrize("mirror", [False, True], ids=["no-mirroring", "mirroring"])
def test_labels_match_nnunet_predictor(tiny_model: TinyModel, tmp_path: Path, mirror: bool) -> None:
    volume = ct_volume()
    expected = reference_labels(tiny_model, volume, tmp_path, mirror)
    segmenter = open_segmenter(
        ModelBundle.load(tiny_model.bundle), SessionOptions(device=Device.CPU), mirror_tta=mirror
    )
    labels = segmenter.segment(volume).labels
    assert labels.shape == volume.array.shape
    values = sorted(int(v) for v in np.unique(expected))
    assert len(values) >= 3, f"the reference segments too little to compare: {values}"
    equal = float((labels == expected).mean())
    assert equal >= 0.999, f"{equal:.5f} of voxels equal"
    for value in values[1:]:
        dice = _dice(labels == value, expected == value)
        assert dice >= 0.995, f"label {value}: Dice {dice:.4f}"


def test_labels_equal_across_engines(tiny_model: TinyModel) -> None:
    """OpenVINO and onnxruntime give the same labels (logits differ in the last bits)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        missing("openvino (fedseg[cpu]) is needed for the engine comparison")
    volume = ct_volume(seed=1)
    bundle = ModelBundle.load(tiny_model.bundle)
    labels = {}
    for engine in Engine:
        segmenter = open_segmenter(
            bundle, SessionOptions(device=Device.CPU, engine=engine, intra_op_threads=1)
        )
        labels[engine] = segmenter.segment(volume).labels
    assert segmenter.provider == "OpenVINO:CPU"
    equal = float((labels[Engine.ONNXRUNTIME] == labels[Engine.OPENVINO]).mean())
    assert equal >= 0.999, equal
