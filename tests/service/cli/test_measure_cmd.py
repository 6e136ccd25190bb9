"""``fedseg measure``: PET measures per ROI from RTSTRUCT and NIfTI masks; CT statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.cli.main import main
from tests.service.masks.stray_contour import IBSI_PET, STRAY, with_stray_roi

pytestmark = pytest.mark.data


def run_json(capsys, *args: str) -> dict:
    assert main(["measure", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_measure_rtstruct_on_raw_pet(capsys, data_dir) -> None:
    folder = data_dir("sts001-raw/FDG_PET")
    result = run_json(capsys, "--image", str(folder / "image"), "--mask", str(folder / "mask"))
    assert result["suv"]["factor"] == pytest.approx(2.429e-4, abs=0.0005e-4)
    regions = {r["name"]: r for r in result["pet"]}
    mass = regions["GTV_Mass"]
    assert 7.9 < mass["suv_max"] < 8.0
    assert 0.15 < mass["suv_min"] < 0.20
    assert mass["suv_min"] <= mass["suv_mean"] <= mass["suv_max"]
    assert mass["suv_peak_local"] <= mass["suv_peak_global"] <= mass["suv_max"]
    assert mass["tlg"] == pytest.approx(mass["suv_mean"] * mass["mtv_ml"], rel=1e-9)
    assert mass["lesion_count"] == len(mass["lesions"]) >= 1
    voxel_ml = 4.6875 * 4.6875 * 3.27 / 1000
    assert mass["mtv_ml"] == pytest.approx(mass["voxel_count"] * voxel_ml, rel=1e-6)
    stats = {s["name"]: s for s in result["statistics"]}
    assert stats["GTV_Mass"]["mean"] == pytest.approx(mass["suv_mean"], rel=1e-9)


def test_measure_nifti_mask_with_suv_type(capsys, data_dir) -> None:
    folder = data_dir("suv-dro/DRO/DRO_0_0")
    args = ["--image", str(folder / "PT"), "--mask", str(folder / "mask" / "DRO_mask.nii.gz")]
    bw = run_json(capsys, *args)
    bsa = run_json(capsys, *args, "--suv-type", "bsa", "--connectivity", "6")
    (region,) = bw["pet"]
    assert abs(region["suv_max"] - 4.0) <= 0.01
    assert abs(region["suv_median"] - 1.0) <= 0.01
    (region_bsa,) = bsa["pet"]
    bsa_cm2 = 0.007184 * 70**0.425 * 175**0.725 * 1e4
    assert region_bsa["suv_type"] == "bsa"
    assert region_bsa["suv_max"] == pytest.approx(region["suv_max"] * bsa_cm2 / 70000, rel=1e-6)
    assert region_bsa["mtv_ml"] == pytest.approx(region["mtv_ml"], rel=1e-12)


def test_measure_lbm_of_sex_other_says_how(capsys, data_dir) -> None:
    folder = data_dir("suv-dro/DRO/DRO_0_0")
    args = ["--image", str(folder / "PT"), "--mask", str(folder / "mask"), "--suv-type", "lbm"]
    result = run_json(capsys, *args)
    assert "PatientSex O: mean of the male and female LBM values" in result["suv"]["method"]
    lbm = (1.10 * 70 - 120 * 0.16 + 1.07 * 70 - 148 * 0.16) / 2
    assert result["pet"][0]["suv_max"] == pytest.approx(4.0 * lbm / 70, rel=0.005)


def test_measure_ct_gives_statistics_only(capsys, data_dir) -> None:
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation")
    result = run_json(
        capsys,
        "--image",
        str(root / "dicom/STS_001/CT/image"),
        "--mask",
        str(root / "nifti/STS_001/CT_mask.nii.gz"),
    )
    assert result["suv"] is None and result["pet"] == []
    (stat,) = result["statistics"]
    assert stat["voxel_count"] == 117145
    spacing = np.asarray(result["image"]["spacing_mm"])
    assert stat["volume_ml"] == pytest.approx(117145 * spacing.prod() / 1000, rel=1e-3)
    assert -200 < stat["mean"] < 200  # soft-tissue sarcoma in HU


def test_text_summary_lists_each_roi_once_with_units(capsys, data_dir) -> None:
    folder = data_dir("sts001-raw/FDG_PET")
    assert main(["measure", "--image", str(folder / "image"), "--mask", str(folder / "mask")]) == 0
    out = capsys.readouterr().out
    assert out.count("GTV_Mass") == 1 and out.count("GTV_Edema") == 1
    assert "SUVbw (g/mL)" in out and " mL" in out and " g;" in out  # SUV, volume, TLG units
    assert "local = sphere centred on the hottest voxel" in out


def test_a_stray_contour_leaves_out_its_roi_and_says_so(capsys, data_dir, tmp_path) -> None:
    root = data_dir(IBSI_PET)
    mask = with_stray_roi(root / "mask/RS.dcm", tmp_path / "RS.dcm", 3.27 / 2)
    result = run_json(capsys, "--image", str(root / "image"), "--mask", str(mask))
    assert [r["name"] for r in result["pet"]] == ["GTV_Mass_PET"]
    assert result["pet"][0]["voxel_count"] == 5095
    assert list(result["mask"]["refused"]) == ["2"]
    assert main(["measure", "--image", str(root / "image"), "--mask", str(mask)]) == 0
    out = capsys.readouterr().out
    assert f"mask warning: ROI {STRAY!r} (number 2)" in out
