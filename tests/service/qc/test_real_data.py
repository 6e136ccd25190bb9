"""QC on the shared real data: no false alarms on reference masks, garbage caught.

No false alarms: the reference masks (IBSI CT/MR/PET, the 40 sts-pet GTVs, the rt-utils
RTSTRUCT, TotalSegmentator's own organs of ``ct-totalseg-example``) and the phantoms' ground
truth pass QC with 0 failures through ``fedseg convert`` / ``fedseg measure``. Garbage caught:
the shipped ``ct-organs`` (trained on phantoms) on ``ct-totalseg-example`` and, forced, on the
IBSI thigh CT fails QC for its misplaced structures, which ``withhold`` keeps out of the SEG and
RTSTRUCT and the SR lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.cli.main import main
from service.cli.measure_cmd import measure
from service.config import get_settings
from service.dicom.volume import read_volume
from service.labels.registry import get_table
from service.masks import load_regions
from service.nifti import write_nifti
from service.pet.body_size import SuvType
from service.pet.measures import Connectivity
from service.qc.enum import QcPolicy
from service.segment import SegmentOptions, StudyResult, segment_study
from tests.dciodvfy import assert_valid
from training.phantoms import PhantomConfig, Size, generate_dataset

DataDir = Callable[[str], Path]
TABLE = get_table("ct-organs")
IBSI = "ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001"
TOTALSEG = "ct-totalseg-example/tests/reference_files"
#: TotalSegmentator v2 class → ct-organs label, for the organs in its example's field of view.
TOTALSEG_TO_CT_ORGANS = {5: 1, 1: 2, 7: 5, 79: 6}


def _convert(image: Path, mask: Path, out: Path, *task: str) -> dict[str, object]:
    args = ["convert", "--image", str(image), "--mask", str(mask), "--out", str(out)]
    assert main([*args, *(("--task", task[0]) if task else ())]) == 0
    qc: dict[str, object] = json.loads((out / "measurements.json").read_text())["qc"]
    return qc


def _failed(qc: dict[str, object]) -> list[str]:
    return [s["name"] for s in qc["structures"] if s["status"] == "fail"]  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_ibsi_reference_masks_pass(data_dir: DataDir, tmp_path: Path, modality: str) -> None:
    folder = data_dir(f"{IBSI}/{modality}")
    qc = _convert(folder / "image", next((folder / "mask").iterdir()), tmp_path)
    assert qc["structures"] and _failed(qc) == []


def test_rtutils_reference_mask_passes(data_dir: DataDir, tmp_path: Path) -> None:
    folder = data_dir("rtstruct-rtutils/tests/mock_data")
    qc = _convert(folder, folder / "rt.dcm", tmp_path)
    assert qc["structures"] and _failed(qc) == []


def test_every_sts_pet_gtv_passes(data_dir: DataDir) -> None:
    patients = sorted(data_dir("sts-pet/ibsi_validation/dicom").glob("STS_*"))
    assert len(patients) == 40
    failed = {}
    for patient in patients:
        result = measure(
            patient / "PET" / "image",
            patient / "PET" / "mask" / "RS.dcm",
            SuvType.BW,
            Connectivity.FACE_EDGE_VERTEX,
        )
        failed[patient.name] = _failed(result["qc"])  # type: ignore[arg-type]
    assert {k: v for k, v in failed.items() if v} == {}


def test_totalsegmentator_organs_pass(data_dir: DataDir, tmp_path: Path) -> None:
    image = data_dir(f"{TOTALSEG}/example_ct_dicom")
    reference = load_regions(data_dir(f"{TOTALSEG}/example_seg_dicom.nii.gz"), read_volume(image))
    labels = reference.to_label_map()
    ours = np.zeros(labels.shape, dtype=np.uint8)
    for theirs, number in TOTALSEG_TO_CT_ORGANS.items():
        ours[labels == theirs] = number
    path = tmp_path / "ct-organs.nii.gz"
    write_nifti(path, ours, reference.affine)
    qc = _convert(image, path, tmp_path / "out", "ct-organs")
    names = {s["name"] for s in qc["structures"]}  # type: ignore[attr-defined]
    assert names == {"liver", "spleen", "pancreas", "spinal_cord"} and _failed(qc) == []


def test_phantom_ground_truth_passes(tmp_path: Path) -> None:
    config = PhantomConfig(sites=2, cases_per_site=1, seed=7, size=Size.SMALL, partial_labels=False)
    generate_dataset(tmp_path / "phantoms", config)
    for case in sorted((tmp_path / "phantoms").glob("site-*/case-*")):
        for series, task in (("ct", "ct-organs"), ("pt", "pet-lesion"), ("mr", "mr-tumour")):
            out = tmp_path / "out" / case.parent.name / series
            qc = _convert(case / series, case / "labels" / f"{task}.nii.gz", out, task)
            assert qc["structures"] and _failed(qc) == [], (case, series)


MISPLACED = {"kidney_left", "kidney_right", "spinal_cord", "lung_left", "lung_right"}


@pytest.fixture(scope="module")
def body_ct(
    data_dir: DataDir, tmp_path_factory: pytest.TempPathFactory
) -> tuple[StudyResult, Path]:
    out = tmp_path_factory.mktemp("ct-organs-on-body-ct")
    options = SegmentOptions(models=("ct-organs",), qc_policy=QcPolicy.WITHHOLD)
    result = segment_study([data_dir(f"{TOTALSEG}/example_ct_dicom")], out, options, get_settings())
    return result, out


def test_shipped_ct_organs_on_a_body_ct_fails_the_misplaced(
    body_ct: tuple[StudyResult, Path],
) -> None:
    result, _ = body_ct
    (series,) = result.series
    assert not series.skipped and series.qc is not None
    assert set(_failed(series.qc)) >= MISPLACED
    assert set(series.qc["withheld"]) == set(_failed(series.qc))  # type: ignore[arg-type]


def test_withheld_structures_are_absent_from_seg_and_rtstruct_and_listed_in_the_sr(
    body_ct: tuple[StudyResult, Path],
) -> None:
    result, out = body_ct
    withheld = set(result.series[0].qc["withheld"])  # type: ignore[index, arg-type]
    entries = [TABLE.by_name(name) for name in result.series[0].present]
    seg = pydicom.dcmread(out / "seg.dcm")
    rtstruct = pydicom.dcmread(out / "rtstruct.dcm")
    # SEG labels are display names, RTSTRUCT ROI names TG-263 names.
    assert {str(s.SegmentLabel) for s in seg.SegmentSequence} == {
        e.display_name for e in entries if e.name not in withheld
    }
    assert {str(r.ROIName) for r in rtstruct.StructureSetROISequence} == {
        e.tg263_name for e in entries if e.name not in withheld
    }
    assert "RESEARCH USE ONLY" in seg.SeriesDescription and seg.ContentDescription
    assert "withheld by QC" in rtstruct.StructureSetDescription
    sr = pydicom.dcmread(out / "sr.dcm").to_json()
    assert sr.count("Rejected for Quality Reasons") == len(withheld)
    for name in withheld:
        assert name in sr
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
    measured = json.loads((out / "measurements.json").read_text())
    assert withheld <= {s["name"] for s in measured["segments"]}  # local results keep all
    # Each segment names its label number, which QC verdicts are keyed by (the SEG renumbers).
    verdicts = {s["number"]: s["name"] for s in measured["qc"]["structures"]}
    assert all(verdicts[s["label_number"]] == s["name"] for s in measured["segments"])
    assert any(s["label_number"] != s["segment_number"] for s in measured["segments"])


def test_forced_ct_organs_on_the_thigh_fails_every_organ(data_dir: DataDir, tmp_path: Path) -> None:
    options = SegmentOptions(models=("ct-organs",), force=True, qc_policy=QcPolicy.WITHHOLD)
    result = segment_study([data_dir(f"{IBSI}/CT/image")], tmp_path, options, get_settings())
    (series,) = result.series
    assert series.applicability["forced"] and not series.applicability["inside_intended_use"]
    assert set(series.present) == set(_failed(series.qc))  # type: ignore[arg-type]
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "rtstruct.dcm").exists()
    sr = pydicom.dcmread(tmp_path / "sr.dcm").to_json()
    assert all(name in sr for name in series.present)
    assert_valid(tmp_path / "sr.dcm")


def test_flag_policy_sends_everything_marked(data_dir: DataDir, tmp_path: Path) -> None:
    options = SegmentOptions(models=("ct-organs",), qc_policy=QcPolicy.FLAG)
    result = segment_study(
        [data_dir(f"{TOTALSEG}/example_ct_dicom")], tmp_path, options, get_settings()
    )
    failed = set(_failed(result.series[0].qc))  # type: ignore[arg-type]
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    marked = {
        str(s.SegmentLabel)
        for s in seg.SegmentSequence
        if "QC FAIL" in s.get("SegmentDescription", "")
    }
    assert failed and marked == {TABLE.by_name(name).display_name for name in failed}
