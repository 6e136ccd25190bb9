"""``fedseg segment --model BUNDLE`` with an nnU-Net bundle: DICOM in, DICOM out, through the
same writers and QC as every model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.cli.main import main
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import read_volume
from service.inference.bundle import ModelBundle, write_checksums
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, Mirroring, SessionOptions
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


def _mirroring_run(
    bundle: Path, study: Path, out: Path, *flags: str
) -> tuple[dict[str, object], np.ndarray]:
    args = ["segment", str(study), "--out", str(out), "--model", str(bundle), "--device", "cpu"]
    code = main([*args, "--qc-policy", "off", "--force", "--formats", "seg", *flags])
    assert code == 0
    (series,) = json.loads((out / "summary.json").read_text())["series"]
    return series, pydicom.dcmread(out / "seg.dcm").pixel_array


def test_mirroring_follows_the_model_unless_asked(tiny_model: TinyModel, tmp_path: Path) -> None:
    """Default: an nnU-Net model mirrors along its trained axes, as nnUNetPredictor does."""
    volume = ct_volume()
    write_series(tmp_path / "ct", volume.array, volume.affine, SeriesSpec(modality="CT"))
    default, seg_default = _mirroring_run(tiny_model.bundle, tmp_path / "ct", tmp_path / "a")
    off, seg_off = _mirroring_run(tiny_model.bundle, tmp_path / "ct", tmp_path / "b", "--no-tta")
    assert default["mirroring"] is True and off["mirroring"] is False
    bundle = ModelBundle.load(tiny_model.bundle)
    options = SessionOptions(device=Device.CPU)
    stored = read_volume(tmp_path / "ct")  # what the CLI segmented: CT values as stored
    mirrored = open_segmenter(bundle, options, mirroring=Mirroring.ON).segment(stored).labels
    plain = open_segmenter(bundle, options, mirroring=Mirroring.OFF).segment(stored).labels
    assert not np.array_equal(mirrored, plain), "mirroring changes nothing on this case"
    # The default's labels are the mirrored ones, --no-tta's the plain ones.
    for seg, labels in ((seg_default, mirrored), (seg_off, plain)):
        assert int(np.count_nonzero(seg)) == int(np.count_nonzero(labels))


def test_tta_never_mirrors_a_model_trained_without_mirroring(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """A NoMirroring model (TotalSegmentator's) has left and right organs: --tta adds nothing."""
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_model.bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for model in manifest["nnunet"]["models"]:
        model["mirror_axes"] = []
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_checksums(folder)
    bundle = ModelBundle.load(folder)
    options = SessionOptions(device=Device.CPU)
    for mirroring in Mirroring:
        assert open_segmenter(bundle, options, mirroring=mirroring).mirroring is False


def test_fedseg_unet_mirrors_only_when_asked() -> None:
    bundle = ModelBundle.load(Path(__file__).parents[4] / "models" / "ct-organs")
    options = SessionOptions(device=Device.CPU)
    expected = {Mirroring.MODEL: False, Mirroring.ON: True, Mirroring.OFF: False}
    for mirroring, on in expected.items():
        assert open_segmenter(bundle, options, mirroring=mirroring).mirroring is on
