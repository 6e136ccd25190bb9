from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.cli.main import main
from service.dicom.volume import read_volume
from service.labels.registry import get_table
from service.masks import load_regions
from service.nifti import read_nifti, write_nifti
from tests.dciodvfy import assert_valid
from tests.result_series import phantom_labels, write_phantom_series
from tests.service.masks.stray_contour import IBSI_PET, with_stray_roi


@pytest.fixture(scope="module")
def ct_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ct")
    write_phantom_series(folder, "CT", "feet-first")
    return folder


def test_nifti_mask_to_every_format(ct_series: Path, tmp_path: Path) -> None:
    volume = read_volume(ct_series)
    labels = phantom_labels()
    mask = write_nifti(tmp_path / "labels.nii.gz", labels, volume.affine)
    out = tmp_path / "out"
    assert main(["convert", "--image", str(ct_series), "--mask", str(mask), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "measurements.json",
        "rtstruct.dcm",
        "seg.dcm",
        "sr.dcm",
    ]
    series_numbers = set()
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
        ds = pydicom.dcmread(out / name)
        assert ds.StudyInstanceUID == volume.study_instance_uid
        assert ds.SeriesInstanceUID != volume.series_instance_uid
        series_numbers.add(int(ds.SeriesNumber))
    assert len(series_numbers) == 3  # a PACS lists SEG, RTSTRUCT and SR as separate series
    shown = {
        "seg.dcm": ["Liver", "Spleen", "Left kidney"],  # the table's display names
        "rtstruct.dcm": ["Liver", "Spleen", "Kidney_L"],  # its TG-263 names
    }
    for name, names in shown.items():
        back = load_regions(out / name, volume, get_table("ct-organs"))
        assert back.names == names
        assert [r.code.name for r in back if r.code] == ["liver", "spleen", "kidney_left"]
        assert np.array_equal(back.to_label_map(), labels)
    data = json.loads((out / "measurements.json").read_text())
    assert [s["name"] for s in data["segments"]] == ["liver", "spleen", "kidney_left"]
    assert data["segments"][0]["voxel_count"] == int((labels == 1).sum())


def test_seg_to_rtstruct_only(ct_series: Path, tmp_path: Path) -> None:
    volume = read_volume(ct_series)
    mask = write_nifti(tmp_path / "labels.nii", phantom_labels(), volume.affine)
    first = tmp_path / "first"
    assert (
        main(
            [
                "convert",
                "--image",
                str(ct_series),
                "--mask",
                str(mask),
                "--out",
                str(first),
                "--formats",
                "seg",
            ]
        )
        == 0
    )
    second = tmp_path / "second"
    args = ["--mask", str(first / "seg.dcm"), "--out", str(second), "--formats", "rtstruct"]
    assert main(["convert", "--image", str(ct_series), *args]) == 0
    assert [p.name for p in second.iterdir()] == ["rtstruct.dcm"]
    assert np.array_equal(
        load_regions(second / "rtstruct.dcm", volume).to_label_map(), phantom_labels()
    )


@pytest.mark.parametrize(("formats", "message"), [("sr", "needs seg"), ("seg,png", "png")])
def test_bad_formats_exit_with_configuration_error(
    ct_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], formats: str, message: str
) -> None:
    args = ["--mask", str(tmp_path / "x.nii"), "--out", str(tmp_path / "o"), "--formats", formats]
    assert main(["convert", "--image", str(ct_series), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.data
def test_real_pet_rtstruct_measurements(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/PET")
    out = tmp_path / "out"
    args = ["--mask", str(root / "mask/RS.dcm"), "--out", str(out), "--formats", "seg,sr,json"]
    assert main(["convert", "--image", str(root / "image"), *args]) == 0
    (segment,) = json.loads((out / "measurements.json").read_text())["segments"]
    assert segment["voxel_count"] == 5095
    # MIRP's reference for this tumour: 7.9 < SUVmax < 8.0, 0.15 < SUVmin < 0.20 (README).
    assert 7.9 < segment["pet"]["suv_max"] < 8.0
    assert 0.15 < segment["intensity"]["min"] < 0.20
    assert segment["pet"]["suv_type"] == "bw"
    assert_valid(out / "seg.dcm")
    assert_valid(out / "sr.dcm")


@pytest.mark.data
def test_rtstruct_to_nifti_equals_the_reference_mask(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation")
    image = root / "dicom/STS_001/CT/image"
    out = tmp_path / "out"
    args = ["--mask", str(root / "dicom/STS_001/CT/mask/RS.dcm"), "--out", str(out)]
    assert main(["convert", "--image", str(image), *args, "--formats", "nifti"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "labels.nii.gz"]
    written, affine = read_nifti(out / "labels.nii.gz")
    expected, expected_affine = read_nifti(root / "nifti/STS_001/CT_mask.nii.gz")
    assert np.allclose(affine, expected_affine, atol=1e-3)
    assert written.dtype == np.uint8
    assert np.array_equal(written, expected.astype(np.uint8))  # 117145 voxels of value 1
    sidecar = json.loads((out / "labels.json").read_text())
    assert sidecar["task"] == "ct-organs"
    assert sidecar["labels"] == {"1": {"name": "GTV_Mass_CT"}}  # not a ct-organs label
    assert "RAS" in sidecar["axes"]


def test_label_map_to_nifti_names_the_table_labels(ct_series: Path, tmp_path: Path) -> None:
    volume = read_volume(ct_series)
    mask = write_nifti(tmp_path / "in.nii.gz", phantom_labels(), volume.affine)
    out = tmp_path / "out"
    args = ["--mask", str(mask), "--out", str(out), "--formats", "nifti,seg"]
    assert main(["convert", "--image", str(ct_series), *args]) == 0
    back = load_regions(out / "labels.nii.gz", volume)
    assert np.array_equal(back.to_label_map(), phantom_labels())
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert [v["name"] for v in labels.values()] == ["liver", "spleen", "kidney_left"]
    assert labels["3"]["tg263_name"] == "Kidney_L"


@pytest.mark.data
def test_a_stray_contour_leaves_out_its_roi_and_says_so(data_dir, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    root = data_dir(IBSI_PET)
    mask = with_stray_roi(root / "mask/RS.dcm", tmp_path / "RS.dcm", 1000.0)
    out = tmp_path / "out"
    args = ["--image", str(root / "image"), "--mask", str(mask), "--out", str(out)]
    assert main(["convert", *args, "--formats", "seg,json"]) == 0
    assert "warning: ROI number 2 not converted" in capsys.readouterr().err
    (segment,) = json.loads((out / "measurements.json").read_text())["segments"]
    assert segment["name"] == "GTV_Mass_PET" and segment["voxel_count"] == 5095
