"""fedseg's nnU-Net executor against nnUNetPredictor itself, end to end on the same NIfTI input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, SessionOptions

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
