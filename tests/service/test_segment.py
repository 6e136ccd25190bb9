"""``segment_study`` and ``fedseg segment``: DICOM study in, valid SEG/RTSTRUCT/SR/JSON out."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.cli.main import main
from service.config import get_settings
from service.dicom.volume import read_volume
from service.errors import FedsegError
from service.inference.bundle import save_bundle
from service.masks import load_regions
from service.segment import SegmentOptions, segment_study
from tests.dciodvfy import assert_valid
from tests.service.inference.conftest import pointwise_model, threshold_manifest

DataDir = Callable[[str], Path]
STS = "sts-pet/ibsi_validation/dicom/STS_003/PET/image"


def _suv_bundle(path: Path, threshold_suv: float = 4.5, **overrides: object) -> Path:
    """pet-lesion bundle labelling SUV > threshold (SUV normalised by 10, at 4 mm)."""
    manifest = threshold_manifest(
        "pet-lesion",
        normalisation={"kind": "suv", "low": 0.0, "high": 10.0},
        spacing=(4.0, 4.0, 4.0),
        **overrides,
    )
    cut = threshold_suv / 10.0
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([cut, -cut]))
    return save_bundle(path, model, manifest).path


def test_pet_study_gives_valid_results(data_dir: DataDir, tmp_path: Path) -> None:
    bundle = _suv_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    options = SegmentOptions(models=(str(bundle),))
    result = segment_study([data_dir(STS)], out, options, get_settings())
    assert not result.failed
    (series,) = result.series
    assert series.present == ["lesion"] and series.provider == "CPUExecutionProvider"
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series"][0]["outputs"]["seg"] == "seg.dcm"  # relative to the folder
    assert set(result.timings) == {"read", "preprocess", "infer", "postprocess", "write"}
    # The SEG read back onto the image holds exactly voxels that the threshold model selects,
    # and the JSON's SUVmax is the largest SUV inside it.
    volume = read_volume(data_dir(STS))
    (region,) = load_regions(out / "seg.dcm", volume).regions
    assert region.mask.any()
    assert float(volume.array[region.mask].min()) > 3.0
    (segment,) = json.loads((out / "measurements.json").read_text())["segments"]
    assert segment["name"] == "lesion" and segment["voxel_count"] == int(region.mask.sum())
    assert segment["pet"]["suv_max"] == pytest.approx(float(volume.array[region.mask].max()))
    seg = pydicom.dcmread(out / "seg.dcm")
    assert seg.StudyInstanceUID == volume.study_instance_uid
    assert seg.SeriesInstanceUID != volume.series_instance_uid


def test_raw_pet_is_converted_to_suv_first(data_dir: DataDir, tmp_path: Path) -> None:
    # Raw Bq/mL would exceed any SUV threshold everywhere; SUV conversion must happen first.
    bundle = _suv_bundle(tmp_path / "bundle", threshold_suv=5.0)
    out = tmp_path / "out"
    options = SegmentOptions(models=(str(bundle),))
    result = segment_study([data_dir("sts001-raw/FDG_PET/image")], out, options, get_settings())
    assert not result.failed and result.series[0].present == ["lesion"]
    volume = read_volume(data_dir("sts001-raw/FDG_PET/image"))
    (region,) = load_regions(out / "seg.dcm", volume).regions
    fraction = region.mask.mean()
    assert 0 < fraction < 0.01  # a few hot spots (bladder, brain, tumour), not the body
    assert_valid(out / "seg.dcm")
    assert_valid(out / "rtstruct.dcm")


def test_nothing_found_writes_only_measurements(data_dir: DataDir, tmp_path: Path) -> None:
    bundle = _suv_bundle(tmp_path / "bundle", threshold_suv=1e4)
    out = tmp_path / "out"
    result = segment_study(
        [data_dir(STS)], out, SegmentOptions(models=(str(bundle),)), get_settings()
    )
    (series,) = result.series
    assert series.present == [] and not series.error
    assert sorted(p.name for p in out.iterdir()) == ["measurements.json", "summary.json"]
    assert json.loads((out / "measurements.json").read_text())["segments"] == []


def test_no_model_for_the_modality(data_dir: DataDir, tmp_path: Path) -> None:
    bundle = _suv_bundle(tmp_path / "bundle")
    ct = data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image")
    with pytest.raises(FedsegError, match=r"no model applies to this study \(series: CT"):
        segment_study([ct], tmp_path / "out", SegmentOptions(models=(str(bundle),)), get_settings())


def test_cli_prints_outputs_and_timings(
    data_dir: DataDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _suv_bundle(tmp_path / "bundle")
    code = main(
        [
            "segment",
            str(data_dir(STS)),
            "--out",
            str(tmp_path / "o"),
            "--model",
            str(bundle),
            "--device",
            "cpu",
            "--formats",
            "seg,json",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "seg.dcm" in printed and "measurements.json" in printed and "rtstruct" not in printed
    assert "timings: read" in printed and "infer" in printed
