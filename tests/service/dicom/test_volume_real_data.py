"""The volume reader on every real series in the shared data, against the folder's references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.config import GeometryPolicy, get_settings
from service.dicom.volume import discover, load_volumes, read_volume
from service.errors import DicomGeometryError
from service.nifti import read_nifti

DataDir = Callable[[str], Path]
IBSI = "ibsi-sts001-multimodal/ibsi_validation"


@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_ibsi_series_match_their_nifti_exactly(data_dir: DataDir, modality: str) -> None:
    volume = read_volume(data_dir(f"{IBSI}/dicom/STS_001/{modality}/image"))
    reference, affine = read_nifti(data_dir(f"{IBSI}/nifti/STS_001/{modality}_image.nii.gz"))
    assert volume.shape == reference.shape
    np.testing.assert_array_equal(volume.array, reference.astype(np.float32))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    assert volume.orientation == "LPS"
    assert volume.on_source_grid and not volume.warnings


def test_all_sts_pet_patients_match_their_nifti(data_dir: DataDir) -> None:
    root = data_dir("sts-pet/ibsi_validation")
    patients = sorted((root / "dicom").glob("STS_*"))
    assert len(patients) == 40
    for patient in patients:
        volume = read_volume(patient / "PET" / "image")
        reference, affine = read_nifti(root / "nifti" / patient.name / "PET_image.nii.gz")
        assert volume.modality == "PT"
        assert volume.shape == reference.shape, patient.name
        np.testing.assert_allclose(volume.array, reference, atol=1e-4, err_msg=patient.name)
        np.testing.assert_allclose(volume.affine, affine, atol=1e-3, err_msg=patient.name)


def test_raw_sts001_series_geometry(data_dir: DataDir) -> None:
    volumes = {v.series_description: v for v in load_volumes(data_dir("sts001-raw"))}
    pet = volumes["PET AC"]
    assert pet.shape == (128, 128, 267)
    np.testing.assert_allclose(pet.spacing, (4.6875, 4.6875, 3.27), atol=2e-3)
    # Bed boundaries shift a few slices by hundredths of a mm: read as regular, with a note.
    assert pet.on_source_grid
    assert any("deviate" in w for w in pet.warnings)
    assert float(pet.array.max()) > 1e5  # Bq/mL before SUV conversion
    t1 = volumes["AXIAL SE T1 - RESEARCH"]
    assert t1.shape == (512, 512, 40)
    np.testing.assert_allclose(t1.spacing[:2], (0.390625, 0.390625), atol=1e-5)
    # Slightly oblique: the row cosine is not exactly +x, yet the axis codes stay LPS.
    assert 0 < abs(t1.affine[2, 1]) / t1.spacing[1] < 0.1
    assert t1.orientation == "LPS"
    assert volumes["AXIAL SE T2 FAT SAT - RESEARCH"].shape == (384, 384, 40)


def test_compressed_series_with_blank_uids(data_dir: DataDir) -> None:
    folder = data_dir("ct-totalseg-example/tests/reference_files/example_ct_dicom")
    volume = read_volume(folder)
    assert volume.shape == (512, 512, 20)  # JPEG 2000 lossless decoded
    np.testing.assert_allclose(volume.spacing, (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert -1100 < float(volume.array.min()) < -900 and float(volume.array.max()) > 1000
    assert any("SOPInstanceUID blank" in w for w in volume.warnings)
    assert any("SeriesInstanceUID blank" in w for w in volume.warnings)
    # UIDs come from the file meta and a stable derived series UID: the same on every read.
    assert all(ref.sop_instance_uid for ref in volume.slices)
    assert len({ref.sop_instance_uid for ref in volume.slices}) == 20
    assert read_volume(folder).series_instance_uid == volume.series_instance_uid


def test_compressed_series_matches_totalsegmentator_label_grid(data_dir: DataDir) -> None:
    folder = data_dir("ct-totalseg-example/tests/reference_files")
    volume = read_volume(folder / "example_ct_dicom")
    _, affine = read_nifti(folder / "example_seg_dicom.nii.gz")
    # TotalSegmentator's NIfTI of this series has the same voxel centres with j flipped.
    corner = volume.affine @ np.array([0, 511, 0, 1.0])
    np.testing.assert_allclose(affine @ np.array([0, 0, 0, 1.0]), corner, atol=1e-3)


def test_gantry_tilt_is_resampled_with_warnings(data_dir: DataDir) -> None:
    volume = read_volume(data_dir("ct-gantry-tilt-ge/In/GE"))
    assert not volume.on_source_grid
    assert any("gantry tilt 18.5" in w for w in volume.warnings)
    assert any("uneven slice spacing" in w for w in volume.warnings)
    direction = volume.affine[:3, :3] / np.asarray(volume.spacing)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-6)  # orthogonal grid
    # The tilt slides slices ~31 mm along the column direction: the grid grows to keep them.
    assert volume.shape[0] == 512 and volume.shape[1] > 512
    assert len(volume.slices) == 28


def test_gantry_tilt_refused_under_strict_policy(data_dir: DataDir) -> None:
    settings = get_settings(geometry_policy=GeometryPolicy.STRICT)
    with pytest.raises(DicomGeometryError, match=r"series 1\.2\.826.*gantry tilt"):
        read_volume(data_dir("ct-gantry-tilt-ge/In/GE"), settings)


def test_single_and_multi_frame_copies_agree(data_dir: DataDir) -> None:
    root = data_dir("seg-dcmqi/data/segmentations")
    single = {v.series_description: v for v in load_volumes(root)}
    for size in ("23x38x3", "24x38x3"):
        classic, enhanced = single[f"Image {size}"], single[f"Multiframe image {size}"]
        np.testing.assert_array_equal(classic.array, enhanced.array)
        np.testing.assert_allclose(classic.affine, enhanced.affine, atol=1e-6)
        assert [s.frame_number for s in enhanced.slices] == [1, 2, 3]


@pytest.mark.parametrize("case", range(1, 10))
def test_suv_dro_grids_match_their_masks(data_dir: DataDir, case: int) -> None:
    folders = sorted(p for p in data_dir("suv-dro/DRO").glob("DRO_*") if p.is_dir())
    assert len(folders) == 9
    folder = folders[case - 1]
    volume = read_volume(folder / "PT")
    mask, affine = read_nifti(folder / "mask" / "DRO_mask.nii.gz")
    assert volume.shape == mask.shape[:3] and volume.shape[2] == 20
    np.testing.assert_allclose(volume.affine, affine, atol=1e-3)


def test_every_series_in_the_shared_data_reads(data_root: Path) -> None:
    found = discover([data_root])
    failures = [plan.describe() for plan in found.plans if plan.error]
    assert not failures
    modalities = {plan.modality for plan in found.plans}
    assert {"CT", "MR", "PT"} <= modalities
    assert len(found.non_image) >= 40 + 9 + 3  # RTSTRUCT, SEG and SR objects set aside
