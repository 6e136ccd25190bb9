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


def test_invalid_patient_attributes_are_dropped_or_normalised_not_fatal(
    data_dir: DataDir, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "pet"
    source.mkdir()
    for path in sorted(data_dir(STS).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = "1956-03-14"  # ISO, not DICOM's DA
        ds.PatientAge = "56"  # not an AS value
        ds.PatientSex = "unknown"
        ds.save_as(source / path.name)
    bundle = _suv_bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        result = segment_study([source], out, SegmentOptions(models=(str(bundle),)), get_settings())
    assert not result.failed
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
        ds = pydicom.dcmread(out / name)
        assert ds.PatientBirthDate == "19560314"
        assert ds.PatientSex == ""
        assert "PatientAge" not in ds
    warnings = result.series[0].warnings
    assert any("PatientBirthDate" in w and "normalised" in w for w in warnings)
    assert any("PatientSex" in w for w in warnings) and any("PatientAge" in w for w in warnings)
    report = json.loads((out / "measurements.json").read_text())
    # fedseg's own log (pydicom's warnings are routed and redacted by the CLI's logging setup).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("service"))
    assert "PatientBirthDate" in ours and "PatientBirthDate" in json.dumps(report["warnings"])
    for value in ("1956", "unknown"):
        assert value not in json.dumps([warnings, report["warnings"]]) + ours
    assert "56" not in json.dumps([warnings, report["warnings"]])  # the age


def test_pet_pixels_are_converted_to_suv_once(
    data_dir: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer measures on the SUVs the model saw; converting again would fail here.
    def twice(*args: object, **kwargs: object) -> None:
        raise AssertionError("PET converted to SUV a second time")

    monkeypatch.setattr("service.results.measurements.to_suv", twice)
    bundle = _suv_bundle(tmp_path / "bundle")
    result = segment_study(
        [data_dir(STS)], tmp_path / "out", SegmentOptions(models=(str(bundle),)), get_settings()
    )
    assert not result.failed, result.series[0].error
    report = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert report["suv"]["suv_type"] == "bw" and report["segments"][0]["pet"]["suv_max"] > 4.5
