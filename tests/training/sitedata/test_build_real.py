"""``dataset build`` on the shared real data: the reference masks come out exactly."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.dicom.volume import read_volume
from service.masks import load_regions
from service.nifti import read_nifti
from tests.service.masks.stray_contour import IBSI_PET, with_stray_roi
from tests.training.sitedata.clinic import scan_for
from training.sitedata import BuildOptions, BuildResult, SiteIndex, build_site
from training.sitedata.findings import Severity, Topic

pytestmark = pytest.mark.data
IBSI_NIFTI = "ibsi-sts001-multimodal/ibsi_validation/nifti/STS_001"


def _build(dicom: list[Path], task: str, out: Path, **kwargs: object) -> BuildResult:
    options = BuildOptions(dicom=tuple(dicom), task=task, out=out, site="site-x", **kwargs)  # type: ignore[arg-type]
    return build_site(options)


def _sources(result: BuildResult) -> dict[str, str]:
    """Case id → source image folder, from the private pseudonym map."""
    with result.pseudonyms.open() as handle:
        return {row["case_id"]: row["source"] for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def sts_pet(data_dir, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BuildResult]:  # type: ignore[no-untyped-def]
    root = data_dir("sts-pet/ibsi_validation")
    out = tmp_path_factory.mktemp("sts") / "site-x"
    return root, _build([root / "dicom"], "pet-lesion", out)


def test_every_sts_pet_rtstruct_builds_into_its_reference_mask(
    sts_pet: tuple[Path, BuildResult],
) -> None:
    root, result = sts_pet
    index = SiteIndex.load(result.index.parent)
    assert len(index.cases) == 40
    assert not [f for f in result.findings if f.severity is not Severity.INFO]
    sources = _sources(result)
    for case in index.cases:
        patient = Path(sources[case.case_id]).parts[-3]  # .../STS_0NN/PET/image
        expected, expected_affine = read_nifti(root / "nifti" / patient / "PET_mask.nii.gz")
        labels, affine = read_nifti(index_folder(result) / case.label)
        assert np.allclose(affine, expected_affine, atol=1e-3), patient
        assert np.array_equal(labels, expected.astype(np.uint8)), patient
        assert case.contoured == ("lesion",)
    first = index.cases[0]
    patient = Path(sources[first.case_id]).parts[-3]
    image, _ = read_nifti(index_folder(result) / first.image)
    reference, _ = read_nifti(root / "nifti" / patient / "PET_image.nii.gz")
    assert np.allclose(image, reference, atol=1e-3)  # stored as SUVbw already: unchanged


def index_folder(result: BuildResult) -> Path:
    return result.index.parent


def test_no_phi_of_the_sts_patients_in_the_site_folder(
    sts_pet: tuple[Path, BuildResult],
) -> None:
    root, result = sts_pet
    needles = set()
    for folder in sorted((root / "dicom").iterdir()):
        image = next((folder / "PET/image").iterdir())
        ds = pydicom.dcmread(image, stop_before_pixels=True)
        for keyword in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "StudyInstanceUID",
            "SeriesInstanceUID",
        ):
            value = str(ds.get(keyword, "")).strip()
            if value:
                needles.add(value)
    assert "STS_001" in needles
    assert scan_for(index_folder(result), sorted(needles)) == {}
    assert "STS_001" in scan_for(result.pseudonyms.parent, ["STS_001"])


@pytest.mark.parametrize(
    ("modality", "task", "mapping"),
    [
        ("PET", "pet-lesion", None),
        ("MR_T1", "mr-tumour", None),
        # ct-organs has no tumour label: a mapping file lends it one to check CT rasterising.
        ("CT", "ct-organs", {"GTV_Mass_CT": "liver"}),
    ],
)
def test_ibsi_rtstructs_build_into_the_reference_masks(
    data_dir,
    tmp_path: Path,
    modality: str,
    task: str,
    mapping: dict | None,  # type: ignore[no-untyped-def]
) -> None:
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation")
    options: dict[str, object] = {}
    if mapping is not None:
        path = tmp_path / "mapping.json"
        path.write_text(json.dumps({"task": task, "names": mapping}))
        options["mapping"] = path
    result = _build([root / "dicom/STS_001"], task, tmp_path / "site-x", **options)
    (case,) = SiteIndex.load(tmp_path / "site-x").cases
    labels, _ = read_nifti(tmp_path / "site-x" / case.label)
    expected, _ = read_nifti(root / f"nifti/STS_001/{modality}_mask.nii.gz")
    value = 1
    assert np.array_equal(labels == value, expected.astype(bool))
    assert int((labels == value).sum()) == (5095 if modality == "PET" else 117145)
    skipped = [f.message for f in result.findings if f.topic is Topic.PAIRING]
    assert len([m for m in skipped if "not a " in m and "series of this task" in m]) == 2


def test_rtutils_rtstruct_builds_and_the_broken_mim_ones_are_reported(
    data_dir,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    root = data_dir("rtstruct-rtutils/tests/mock_data")
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"task": "ct-organs", "names": {"ROI-1": "liver"}}))
    result = _build([root], "ct-organs", tmp_path / "site-x", mapping=mapping)
    (case,) = SiteIndex.load(tmp_path / "site-x").cases
    assert case.contoured == ("liver",)
    volume = read_volume([root / "ct_1.dcm", root / "ct_2.dcm"])
    expected = load_regions(root / "rt.dcm", volume).regions[0].mask
    labels, _ = read_nifti(tmp_path / "site-x" / case.label)
    assert expected.any() and np.array_equal(labels == 1, expected)
    broken = {
        Path(f.source or "").name: f.message
        for f in result.findings
        if f.topic is Topic.READ and f.severity is Severity.ERROR
    }
    assert set(broken) == {"invalid_reference_rt.dcm", "non_existent_reference_rt.dcm"}
    for message in broken.values():
        assert "the RTSTRUCT's image references are broken" in message
        assert str(root) not in message  # the path stays in the private report
    assert any("frame of reference" in f.message for f in result.findings if f.topic is Topic.QC)


def test_raw_mim_mr_rtstruct_builds_with_the_edema_left_out(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("sts001-raw/MR_T1")
    result = _build([root], "mr-tumour", tmp_path / "site-x")
    (case,) = SiteIndex.load(tmp_path / "site-x").cases
    (mask_file,) = (root / "mask").iterdir()
    expected = load_regions(mask_file, read_volume(root / "image")).get("GTV_Mass").mask
    labels, _ = read_nifti(tmp_path / "site-x" / case.label)
    assert np.array_equal(labels == 1, expected)
    names = {f.message for f in result.findings if f.topic is Topic.ROI_NAME}
    assert "ROI 'GTV_Mass' -> tumour (TG-263 GTV)" in names
    assert any("'GTV_Edema' is not mapped (derived from a GTV (edema))" in m for m in names)


@pytest.mark.parametrize(("roi", "built"), [("Couch", True), ("GTV_2", False)])
def test_a_stray_contour_refuses_its_roi_not_the_file(
    data_dir,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    roi: str,
    built: bool,
) -> None:
    root = data_dir(IBSI_PET)
    dicom = tmp_path / "export"
    shutil.copytree(root / "image", dicom / "image")
    with_stray_roi(root / "mask/RS.dcm", dicom / "mask/RS.dcm", 3.27 / 2, roi=roi)
    result = _build([dicom], "pet-lesion", tmp_path / "site-x")
    warnings = [f.message for f in result.findings if f.severity is Severity.WARNING]
    assert any(f"ROI {roi!r} (number 2)" in m and "left out" in m for m in warnings)
    cases = SiteIndex.load(tmp_path / "site-x").cases
    if built:  # an unmapped stray ROI costs nothing: GTV_Mass_PET builds as the reference
        (case,) = cases
        labels, _ = read_nifti(tmp_path / "site-x" / case.label)
        expected, _ = read_nifti(data_dir(IBSI_NIFTI) / "PET_mask.nii.gz")
        assert np.array_equal(labels, expected.astype(np.uint8))
    else:  # a second lesion that cannot be placed: the lesion label is unknown, not partial
        assert cases == ()
        assert any("'GTV_2' (lesion) was refused" in m for m in warnings)
