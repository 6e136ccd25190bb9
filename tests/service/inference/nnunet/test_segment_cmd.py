"""``fedseg segment --model BUNDLE`` with an nnU-Net bundle: DICOM in, DICOM out, through the
same writers and QC as every model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.cli.main import main
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import read_volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, SessionOptions
from tests.dciodvfy import assert_valid

from .conftest import TinyModel, ct_volume


def test_segment_writes_seg_rtstruct_sr(tiny_model: TinyModel, tmp_path: Path) -> None:
    volume = ct_volume()
    spec = SeriesSpec(
        modality="CT", patient_position="HFS", accession_number="A1", study_description="t"
    )
    write_series(tmp_path / "ct", volume.array, volume.affine, spec)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "ct"), "--out", str(out), "--model", str(tiny_model.bundle)]
    # --force: the tiny CT is outside the imported default intended use (no real anatomy).
    code = main(
        [*args, "--device", "cpu", "--engine", "openvino", "--qc-policy", "flag", "--force"]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    (series,) = summary["series"]
    assert series["provider"] == "OpenVINO:CPU"
    assert series["error"] is None
    # The labels the CLI wrote are those of the executor on the volume read back from DICOM.
    expected = open_segmenter(
        ModelBundle.load(tiny_model.bundle), SessionOptions(device=Device.CPU)
    )
    labels = expected.segment(read_volume(tmp_path / "ct")).labels
    present = sorted(
        e.name for e in expected.bundle.manifest.label_table().labels if np.any(labels == e.number)
    )
    assert sorted(series["present"]) == present
    assert len(present) >= 2
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)


def test_bf16_with_onnxruntime_is_refused(
    tiny_model: TinyModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = ct_volume()
    spec = SeriesSpec(modality="CT", patient_position="HFS")
    write_series(tmp_path / "ct", volume.array, volume.affine, spec)
    out = tmp_path / "out"
    args = ["segment", str(tmp_path / "ct"), "--out", str(out), "--model", str(tiny_model.bundle)]
    code = main([*args, "--device", "cpu", "--engine", "onnxruntime", "--precision", "bf16"])
    assert code != 0
    assert "precision 'bf16' was requested with engine 'onnxruntime'" in capsys.readouterr().err
    assert not (out / "seg.dcm").exists()
