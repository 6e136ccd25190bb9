"""``fedseg dataset build`` on a synthetic PACS export with good and bad inputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from service.cli.main import main
from service.dicom.volume import Volume
from service.nifti import read_nifti, write_nifti
from tests.training.sitedata.clinic import (
    box,
    patient,
    scan_for,
    set_frame_of_reference,
    write_ct,
    write_rtstruct_file,
    write_seg_file,
)
from training.sitedata import BuildOptions, SiteFormat, SiteIndex, build_site
from training.sitedata.findings import Severity, Topic

LIVER = box((2, 2, 1), (10, 10, 7))
PANCREAS = box((10, 2, 1), (22, 8, 7)) | box((9, 2, 1), (10, 4, 2))  # 2 voxels inside the liver
LUNG_R = box((12, 10, 0), (22, 18, 8))
LUNG_A, LUNG_B = box((2, 12, 0), (8, 18, 8)), box((3, 12, 0), (9, 18, 8))
SPLEEN, CORD = box((12, 10, 2), (20, 16, 6)), box((14, 10, 2), (20, 16, 6))


@dataclass
class Clinic:
    root: Path
    volumes: dict[int, Volume]


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Clinic:
    root = tmp_path_factory.mktemp("pacs-export")
    volumes = {}
    # Patient 1: good, ambiguous, duplicate, empty, unmapped structures and a small overlap.
    volumes[1] = write_ct(root / "DOE_JANE1", 1)
    structures = {
        "Liver": LIVER,
        "Pancreas": PANCREAS,
        "R Lung": LUNG_R,
        "Kidney": box((10, 8, 2), (12, 10, 4)),
        "LUNG LT": LUNG_A,
        "Lung-Left": LUNG_B,
        "BODY": box((1, 1, 0), (23, 19, 8)),
    }
    write_rtstruct_file(root / "DOE_JANE1/rs/RS1.dcm", volumes[1], structures, empty=("Spleen",))
    # Patient 2: an RTSTRUCT whose CT was not exported.
    scratch = tmp_path_factory.mktemp("not-exported")
    absent = write_ct(scratch, 2)
    write_rtstruct_file(root / "DOE_JANE2/RS2.dcm", absent, {"Liver": LIVER})
    # Patient 3: a SEG on another frame of reference.
    volumes[3] = write_ct(root / "DOE_JANE3", 3)
    labels = np.where(LIVER, 1, 0).astype(np.uint16)
    seg = write_seg_file(root / "DOE_JANE3/seg/SEG3.dcm", volumes[3], labels)
    set_frame_of_reference(seg, "1.2.826.0.1.3680043.8.498.99999")
    # Patient 4: identical duplicates (used once) and a large overlap (both unknown).
    volumes[4] = write_ct(root / "DOE_JANE4", 4)
    structures = {"LIVER": LIVER, "Liver_CT": LIVER, "Spleen": SPLEEN, "Spinal Cord": CORD}
    write_rtstruct_file(root / "DOE_JANE4/RS4.dcm", volumes[4], structures)
    # Patient 5: a CT without structures.
    volumes[5] = write_ct(root / "DOE_JANE5", 5)
    return Clinic(root, volumes)


def _build(clinic: Clinic, out: Path, **kwargs: object) -> object:
    options = BuildOptions(dicom=(clinic.root,), task="ct-organs", out=out, site="site-a", **kwargs)  # type: ignore[arg-type]
    return build_site(options)


@pytest.fixture(scope="module")
def built(
    clinic: Clinic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, object]]:
    out = tmp_path_factory.mktemp("built") / "site-a"
    yield out, _build(clinic, out)


def _messages(result: object, topic: Topic) -> list[str]:
    return [f.message for f in result.findings if f.topic is topic]  # type: ignore[attr-defined]


def test_good_cases_build_and_bad_inputs_are_reported(built: tuple[Path, object]) -> None:
    out, result = built
    index = SiteIndex.load(out)
    # Pseudonyms in order of first sight; patient 3's case failed but keeps its name.
    assert [c.case_id for c in index.cases] == ["site-a_p0001_01", "site-a_p0003_01"]
    first, fourth = index.cases
    assert first.contoured == ("liver", "pancreas", "lung_right")
    assert fourth.contoured == ("liver",)
    pairing = _messages(result, Topic.PAIRING)
    assert any("references an image series that is not in the input" in m for m in pairing)
    assert any("has no RTSTRUCT or SEG; not a training case" in m for m in pairing)
    reads = _messages(result, Topic.READ)
    assert any(m.startswith("SEG not used: SEG frame of reference") for m in reads), reads
    names = _messages(result, Topic.ROI_NAME)
    assert any("'Kidney' is ambiguous" in m and "kidney_left or kidney_right" in m for m in names)
    assert any("'BODY' is not mapped (TG-263 External" in m for m in names)
    empty = _messages(result, Topic.EMPTY)
    assert empty == [
        "ROI 'Spleen' (spleen) has no contour on this series; the label stays unknown for this case"
    ]
    duplicates = _messages(result, Topic.DUPLICATE)
    assert any(
        "2 different structures ('LUNG LT', 'Lung-Left') map to lung_left" in m for m in duplicates
    )
    assert any(
        "2 identical structures ('LIVER', 'Liver_CT') for liver; used once" in m for m in duplicates
    )
    overlaps = _messages(result, Topic.OVERLAP)
    assert any(
        "liver and pancreas overlap by 2 voxels" in m and "go to liver" in m for m in overlaps
    )
    assert any(
        "spinal_cord and spleen overlap by" in m and "both labels are unknown" in m
        for m in overlaps
    )
    errors = [f for f in result.findings if f.severity is Severity.ERROR]  # type: ignore[attr-defined]
    assert len(errors) == 2  # the absent series and the SEG's frame of reference


def test_label_maps_follow_the_policy(built: tuple[Path, object]) -> None:
    out, _ = built
    index = SiteIndex.load(out)
    labels, _ = read_nifti(out / index.cases[0].label)
    expected = np.zeros(LIVER.shape, dtype=np.uint8)
    expected[PANCREAS] = 5
    expected[LIVER] = 1  # the 2 shared voxels go to the smaller structure, the liver
    expected[LUNG_R] = 8
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, expected)
    fourth, _ = read_nifti(out / index.cases[1].label)
    assert set(np.unique(fourth)) == {0, 1}  # spleen and spinal cord left unknown
    sidecar = json.loads((out / index.cases[0].label).with_name("label.json").read_text())
    assert sidecar["contoured"] == ["liver", "pancreas", "lung_right"]
    assert sidecar["labels"]["7"]["tg263_name"] == "Lung_L"
    image, affine = read_nifti(out / index.cases[0].image)
    assert image.dtype == np.int16 and image[5, 5, 3] == 40
    assert np.allclose(
        affine,
        np.diag([2.0, 2.0, 3.0, 1.0])
        + np.array([[0, 0, 0, -20.0], [0, 0, 0, -15.0], [0, 0, 0, 140.0], [0, 0, 0, 0]]),
    )


def test_no_phi_in_the_site_folder(clinic: Clinic, built: tuple[Path, object]) -> None:
    out, result = built
    needles = []
    for number in (1, 2, 3, 4, 5):
        who = patient(number)
        needles += [who.name, who.name.replace("^", " "), who.patient_id, who.birth_date]
    needles += ["DOE_JANE"]  # the export's folder names
    for volume in clinic.volumes.values():
        needles += [volume.study_instance_uid, volume.series_instance_uid]
    assert scan_for(out, needles) == {}
    # The centre's private folder does hold them: the scan would have found them.
    private = scan_for(result.pseudonyms.parent, needles)  # type: ignore[attr-defined]
    assert patient(1).patient_id in private and patient(4).birth_date in private
    assert oct(result.pseudonyms.stat().st_mode & 0o777) == "0o600"  # type: ignore[attr-defined]


def test_mapping_file_round_trip_and_stable_pseudonyms(
    clinic: Clinic, built: tuple[Path, object], tmp_path: Path
) -> None:
    out, result = built
    mapping = json.loads(result.mapping.read_text())  # type: ignore[attr-defined]
    assert mapping["names"]["Kidney"] is None
    assert "could be kidney_left or kidney_right" in mapping["notes"]["Kidney"]
    assert mapping["names"]["LUNG LT"] == "lung_left"
    mapping["names"]["Kidney"] = "Kidney_L"
    mapping["names"]["Lung-Left"] = "ignore"
    edited = tmp_path / "mapping.json"
    edited.write_text(json.dumps(mapping))
    again = tmp_path / "site-a"
    private = result.pseudonyms.parent  # type: ignore[attr-defined]
    rebuilt = _build(clinic, again, mapping=edited, private=private)
    index = SiteIndex.load(again)
    assert [c.case_id for c in index.cases] == [c.case_id for c in SiteIndex.load(out).cases]
    assert index.cases[0].contoured == (
        "liver",
        "kidney_left",
        "pancreas",
        "lung_left",
        "lung_right",
    )
    with result.pseudonyms.open() as handle:  # type: ignore[attr-defined]
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3  # patients 1, 3 and 4
    assert rebuilt.mapping.is_file()  # type: ignore[attr-defined]


def test_nnunet_layout_marks_unknown_voxels_ignore(clinic: Clinic, tmp_path: Path) -> None:
    out = tmp_path / "Dataset501_SiteA"
    _build(clinic, out, format=SiteFormat.NNUNET)
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"] == {
        "background": 0,
        "liver": 1,
        "pancreas": 2,
        "lung_right": 3,
        "ignore": 4,
    }
    assert dataset["numTraining"] == 2 and dataset["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "site-a_p0001_01_0000.nii.gz",
        "site-a_p0003_01_0000.nii.gz",
    ]
    full, _ = read_nifti(out / "labelsTr/site-a_p0001_01.nii.gz")
    assert set(np.unique(full)) == {0, 1, 2, 3}  # contours every label: no ignore
    assert int((full == 3).sum()) == int(LUNG_R.sum())
    partial, _ = read_nifti(out / "labelsTr/site-a_p0003_01.nii.gz")
    assert set(np.unique(partial)) == {1, 4}  # liver, and unknown everywhere else
    assert dataset["fedseg"]["cases"]["site-a_p0003_01"]["contoured"] == ["liver"]
    assert dataset["fedseg"]["task_label_numbers"]["lung_right"] == 8


def test_nnunet_layout_passes_nnunets_own_integrity_check(clinic: Clinic, tmp_path: Path) -> None:
    """nnU-Net's verify_dataset_integrity (the check nnUNetv2_plan_and_preprocess runs) accepts it.

    It reads every image and label with nnU-Net's own reader, checks the label values against
    dataset.json, the grids of image and label against each other and the case count.
    """
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out = tmp_path / "Dataset502_SiteA"
    _build(clinic, out, format=SiteFormat.NNUNET)
    verify_dataset_integrity(str(out), num_processes=1)
    # The check must be able to fail: a label value dataset.json does not declare.
    label_file = out / "labelsTr/site-a_p0001_01.nii.gz"
    labels, affine = read_nifti(label_file)
    labels[0, 0, 0] = 9
    write_nifti(label_file, labels, affine)
    with pytest.raises((AssertionError, RuntimeError)):
        verify_dataset_integrity(str(out), num_processes=1)


def test_training_reads_the_site_folder_with_partial_labels(built: tuple[Path, object]) -> None:
    from training.data import discover_cases, load_case
    from training.tasks import get_task

    out, _ = built
    sources = discover_cases(out, task=get_task("ct-organs"))
    assert [s.annotated for s in sources] == [(1, 5, 8), (1,)]
    case = load_case(sources[0])
    assert case.labels is not None and int((case.labels == 8).sum()) == int(LUNG_R.sum())
    with pytest.raises(Exception, match="holds ct-organs cases, not pet-lesion"):
        discover_cases(out, task=get_task("pet-lesion"))


def test_cli_builds_and_refuses_an_unrelated_folder(
    clinic: Clinic, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site-b"
    args = [
        "dataset",
        "build",
        "--dicom",
        str(clinic.root),
        "--task",
        "ct-organs",
        "--out",
        str(out),
    ]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "built 2 cases of ct-organs" in printed and "2 errors" in printed
    assert "site-b-private/roi-mapping.json" in printed
    other = tmp_path / "documents"
    other.mkdir()
    (other / "letter.txt").write_text("x")
    args[-1] = str(other)
    assert main([*args, "--no-progress"]) == 2
    assert "is not a built site folder" in capsys.readouterr().err


def test_dataset_build_does_not_import_torch() -> None:
    code = (
        "import argparse, sys; from training.cli.dataset_cmd import register; "
        "register(argparse.ArgumentParser().add_subparsers()); import training.sitedata.build; "
        "import training.data.cases; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_seg_builds_into_its_label_map(tmp_path: Path) -> None:
    root = tmp_path / "export"
    volume = write_ct(root / "DOE_JANE6", 6)
    labels = np.zeros(LIVER.shape, dtype=np.uint16)
    labels[LIVER] = 1
    labels[LUNG_R] = 8
    write_seg_file(root / "DOE_JANE6/seg/SEG6.dcm", volume, labels)
    options = BuildOptions(dicom=(root,), task="ct-organs", out=tmp_path / "site-c", site="site-c")
    result = build_site(options)
    (case,) = SiteIndex.load(tmp_path / "site-c").cases
    assert case.contoured == ("liver", "lung_right")
    built, _ = read_nifti(tmp_path / "site-c" / case.label)
    assert np.array_equal(built, labels.astype(np.uint8))
    # The tiny synthetic organs are flagged by the label tables' volume priors, nothing else.
    warned = [f for f in result.findings if f.severity is not Severity.INFO]
    assert warned and all(
        f.topic is Topic.QC and "mL, outside the plausible" in f.message for f in warned
    )


def test_an_nnunet_dataset_of_another_tool_is_not_overwritten(
    clinic: Clinic, tmp_path: Path
) -> None:
    other = tmp_path / "Dataset001_Other"
    (other / "imagesTr").mkdir(parents=True)
    (other / "imagesTr/case_0000.nii.gz").write_bytes(b"x")
    (other / "dataset.json").write_text(json.dumps({"labels": {"background": 0}}))
    with pytest.raises(Exception, match="is not a built site folder"):
        _build(clinic, other, format=SiteFormat.NNUNET)
    assert (other / "imagesTr/case_0000.nii.gz").is_file()
