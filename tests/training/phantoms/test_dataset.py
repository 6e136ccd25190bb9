from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from service.cli.main import main
from service.dicom.volume import read_volume
from service.nifti import read_nifti
from training.phantoms import PhantomConfig, generate_dataset
from training.phantoms.config import ORGAN_VALUES

CONFIG = PhantomConfig(
    sites=5, cases_per_site=2, seed=11, size="tiny", full_label_sites=1, absent_organ_rate=0.5
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    generate_dataset(out, CONFIG)
    return out


def _index(root: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((root / "dataset.json").read_text())


def _cases(root: Path) -> list[tuple[dict, dict]]:  # type: ignore[type-arg]
    return [(site, case) for site in _index(root)["sites"] for case in site["cases"]]


def _suv_bw_factor(header: Dataset) -> float:
    """SUVbw factor computed from the DICOM header alone (decay to series start)."""
    drug = header.RadiopharmaceuticalInformationSequence[0]
    injected = datetime.strptime(drug.RadiopharmaceuticalStartDateTime[:14], "%Y%m%d%H%M%S")
    series = datetime.strptime(header.SeriesDate + header.SeriesTime[:6], "%Y%m%d%H%M%S")
    elapsed = (series - injected).total_seconds()
    dose = float(drug.RadionuclideTotalDose) * 2 ** (-elapsed / float(drug.RadionuclideHalfLife))
    return float(header.PatientWeight) * 1000.0 / dose


def test_same_seed_same_dataset(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, CONFIG)
    assert (again / "dataset.json").read_text() == (dataset / "dataset.json").read_text()
    for name in ["ct/IM0003.dcm", "pt/IM0002.dcm", "mr/IM0001.dcm", "truth.json"]:
        first = (dataset / "site-02/case-001" / name).read_bytes()
        assert (again / "site-02/case-001" / name).read_bytes() == first


def test_partial_labels_as_declared(dataset: Path) -> None:
    expected = {
        "site-01": {"liver"},
        "site-02": {"spleen"},
        "site-03": {"kidney_left", "kidney_right"},
        "site-04": {"pancreas"},
        "site-05": set(ORGAN_VALUES),
    }
    for site, case in _cases(dataset):
        annotated = set(site["annotated_organs"])
        assert annotated == expected[site["site_id"]]
        labels, _ = read_nifti(dataset / case["labels"]["ct-organs"])
        truth = json.loads((dataset / case["path"] / "truth.json").read_text())
        present = {n for n, count in truth["organ_voxels"].items() if count > 0}
        found = {name for name, value in ORGAN_VALUES.items() if np.any(labels == value)}
        assert found == annotated & present
        # Partial sites still image the organs they do not annotate.
        assert bool(present - annotated) == (site["site_id"] != "site-05")


def test_absent_organ_absent_from_labels_and_recorded(dataset: Path) -> None:
    absent_cases = [(s, c) for s, c in _cases(dataset) if c["absent_organs"]]
    assert absent_cases, "config should produce at least one case with an absent organ"
    for _, case in absent_cases:
        truth = json.loads((dataset / case["path"] / "truth.json").read_text())
        assert truth["absent_organs"] == case["absent_organs"]
        for organ in case["absent_organs"]:
            assert truth["organ_voxels"][organ] == 0
            labels, _ = read_nifti(dataset / case["labels"]["ct-organs"])
            assert not np.any(labels == ORGAN_VALUES[organ])


def test_pet_truth_matches_written_dicom(dataset: Path) -> None:
    for _, case in _cases(dataset):
        truth = json.loads((dataset / case["path"] / "truth.json").read_text())["pet"]
        volume = read_volume(dataset / case["series"]["pt"])
        factor = _suv_bw_factor(volume.header)
        assert factor == pytest.approx(truth["suv_bw_factor"], rel=1e-9)
        suv = volume.array.astype(np.float64) * factor
        instances, affine = read_nifti(dataset / case["labels"]["pet-lesion-instances"])
        mask, _ = read_nifti(dataset / case["labels"]["pet-lesion"])
        np.testing.assert_allclose(affine, volume.affine, atol=1e-4)
        np.testing.assert_array_equal(mask > 0, instances > 0)
        voxel_ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0
        groups = [(truth["all_lesions"], instances > 0)] + [
            (lesion["voxelised"], instances == lesion["id"]) for lesion in truth["lesions"]
        ]
        for expected, inside in groups:
            values = suv[inside]
            mtv = values.size * voxel_ml
            assert values.size == expected["voxels"] > 0
            assert values.max() == pytest.approx(expected["suv_max"], rel=1e-4)
            assert values.mean() == pytest.approx(expected["suv_mean"], rel=1e-4)
            assert mtv == pytest.approx(expected["mtv_ml"], rel=1e-6)
            assert values.mean() * mtv == pytest.approx(expected["tlg"], rel=1e-4)
        for lesion in truth["lesions"]:  # uniform lesions, no noise: analytic SUV is exact
            assert lesion["voxelised"]["suv_max"] == lesion["analytic"]["suv_max"] == lesion["suv"]
            assert lesion["voxelised"]["suv_mean"] == pytest.approx(lesion["suv"], rel=1e-12)


def test_anatomy_consistent_in_patient_space(dataset: Path) -> None:
    positions = set()
    for site, case in _cases(dataset):
        positions.add(site["profile"]["patient_position"])
        volume = read_volume(dataset / case["series"]["ct"])
        body, affine = read_nifti(dataset / case["labels"]["body"])
        np.testing.assert_allclose(affine, volume.affine, atol=1e-4)
        assert volume.header.PatientPosition == site["profile"]["patient_position"]
        # Lungs and the spine in patient space, whatever the grid direction: the spinal canal's
        # bone is posterior (+y) of the body centre; air outside the body.
        ijk = np.argwhere(volume.array > 400)  # bone
        points = ijk @ volume.affine[:3, :3].T + volume.affine[:3, 3]
        assert np.median(points[:, 1]) > 20.0
        assert float(np.median(volume.array[body == 0])) < -900
    assert len(positions) >= 2


def test_mr_tumour_classes(dataset: Path) -> None:
    kinds = set()
    for _, case in _cases(dataset):
        truth = json.loads((dataset / case["path"] / "truth.json").read_text())["mr"]["tumour"]
        assert truth["class"] == case["mr_tumour_class"] in {"malignant", "benign"}
        mask, _ = read_nifti(dataset / case["labels"]["mr-tumour"])
        assert int(mask.sum()) == truth["voxels"] > 0
        kinds.add(truth["class"])
    assert kinds == {"malignant", "benign"}


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["phantoms", "--out", str(out), "--sites", "2", "--seed", "3"]
    code = main([*argv, "--cases-per-site", "1", "--size", "tiny", "--modalities", "ct,mr"])
    assert code == 0
    assert "wrote 2 cases" in capsys.readouterr().out
    for site in ("site-01", "site-02"):
        case = out / site / "case-001"
        assert not (case / "pt").exists()
        ct = read_volume(case / "ct")
        labels, affine = read_nifti(case / "labels" / "ct-organs.nii.gz")
        assert ct.modality == "CT" and ct.shape == labels.shape
        np.testing.assert_allclose(affine, ct.affine, atol=1e-4)
        mr = read_volume(case / "mr")
        tumour, _ = read_nifti(case / "labels" / "mr-tumour.nii.gz")
        assert mr.modality == "MR" and mr.shape == tumour.shape


def test_cli_rejects_bad_modality(tmp_path: Path) -> None:
    assert main(["phantoms", "--out", str(tmp_path), "--modalities", "us"]) == 2
