import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.dicom.volume import Volume, read_volume
from service.errors import MaskInputError
from service.masks import load_regions
from service.masks.rtstruct_reader import rasterise_polygon, read_rtstruct
from service.nifti import read_nifti
from tests.service.masks.stray_contour import IBSI_PET, STRAY, with_stray_roi

pytestmark = pytest.mark.data


def test_rasterise_even_odd_with_hole_and_pixel_centres() -> None:
    # Square of pixel edges around centres 1..4 with a hole around centre (2..3, 2..3).
    outer = rasterise_polygon(
        np.array([0.5, 4.5, 4.5, 0.5]), np.array([0.5, 0.5, 4.5, 4.5]), (6, 6)
    )
    hole = rasterise_polygon(np.array([1.5, 3.5, 3.5, 1.5]), np.array([1.5, 1.5, 3.5, 3.5]), (6, 6))
    ring = outer ^ hole
    assert outer.sum() == 16 and outer[1:5, 1:5].all()
    assert ring.sum() == 12 and not ring[2:4, 2:4].any()


@pytest.mark.parametrize(("modality", "voxels"), [("PET", 5095), ("CT", 117145), ("MR_T1", 117145)])
def test_ibsi_rtstruct_reproduces_nifti_mask_exactly(data_dir, modality: str, voxels: int) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation")
    volume = read_volume(root / "dicom/STS_001" / modality / "image")
    regions = load_regions(root / "dicom/STS_001" / modality / "mask/RS.dcm", volume)
    expected, affine = read_nifti(root / f"nifti/STS_001/{modality}_mask.nii.gz")
    assert np.allclose(affine, volume.affine, atol=1e-3)
    mask = regions.get(f"GTV_Mass_{modality}").mask
    assert mask.sum() == voxels
    assert np.array_equal(mask, expected.astype(bool))


def test_ibsi_nifti_mask_reads_as_the_same_region(data_dir) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation")
    volume = read_volume(root / "dicom/STS_001/PET/image")
    from_nifti = load_regions(root / "nifti/STS_001/PET_mask.nii.gz", volume)
    from_rt = load_regions(root / "dicom/STS_001/PET/mask", volume)  # folder with one RS.dcm
    assert from_nifti.names == ["label_1"]
    assert np.array_equal(from_nifti.regions[0].mask, from_rt.regions[0].mask)


def _nifti_grid_volume(image: Path) -> Volume:
    """A pixel-free volume on the NIfTI image grid (reading 40 DICOM series would take ~30 s)."""
    array, affine = read_nifti(image)
    return Volume(
        array=np.zeros(array.shape, np.float32),
        affine=affine,
        modality="PT",
        series_instance_uid="nifti",
        study_instance_uid="",
        frame_of_reference_uid="",
        series_description="",
        stack_label="",
        slices=(),
        headers=(),
    )


def test_every_sts_pet_rtstruct_matches_its_nifti(data_dir) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("sts-pet/ibsi_validation")
    patients = sorted((root / "dicom").iterdir())
    assert len(patients) == 40
    # The NIfTI grid is the DICOM grid (checked on one patient against the DICOM reader).
    first = read_volume(patients[0] / "PET/image")
    assert np.allclose(
        _nifti_grid_volume(root / "nifti" / patients[0].name / "PET_image.nii.gz").affine,
        first.affine,
        atol=1e-3,
    )
    for patient in patients:
        nifti = root / "nifti" / patient.name
        volume = _nifti_grid_volume(nifti / "PET_image.nii.gz")
        regions = read_rtstruct(patient / "PET/mask/RS.dcm", volume)
        expected, _ = read_nifti(nifti / "PET_mask.nii.gz")
        mask = regions.get("GTV_Mass_PET").mask
        assert mask.any(), patient.name
        assert np.array_equal(mask, expected.astype(bool)), patient.name


def _rtutils(data_dir) -> tuple[Path, object]:  # type: ignore[no-untyped-def]
    root = data_dir("rtstruct-rtutils/tests/mock_data")
    return root, read_volume([root / "ct_1.dcm", root / "ct_2.dcm"])


def test_rtutils_rtstruct_is_read(data_dir) -> None:  # type: ignore[no-untyped-def]
    root, volume = _rtutils(data_dir)
    regions = load_regions(root / "rt.dcm", volume)  # type: ignore[arg-type]
    assert regions.names == ["ROI-1"]
    assert regions.regions[0].voxel_count > 0
    assert "frame of reference" in regions.warnings[0]  # rt-utils invents a new one


@pytest.mark.parametrize("name", ["invalid_reference_rt.dcm", "non_existent_reference_rt.dcm"])
def test_broken_references_give_a_clear_error(data_dir, name: str) -> None:  # type: ignore[no-untyped-def]
    root, volume = _rtutils(data_dir)
    with pytest.raises(
        MaskInputError, match=r"references are broken or it belongs to another series"
    ):
        load_regions(root / name, volume)  # type: ignore[arg-type]


def test_an_image_is_not_a_mask(data_dir) -> None:  # type: ignore[no-untyped-def]
    folder = data_dir("rtstruct-rtutils/tests/oriented_data")
    volume = read_volume(folder)
    with pytest.raises(MaskInputError, match="not a mask"):
        load_regions(folder / "0.dcm", volume)


def test_raw_whole_body_pet_rtstruct_matches_the_cropped_ibsi_mask(data_dir) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("sts001-raw/FDG_PET")
    volume = read_volume(root / "image")
    (mask_file,) = (root / "mask").iterdir()
    regions = load_regions(mask_file, volume)
    assert regions.names == ["GTV_Mass", "GTV_Edema"]
    # The IBSI PET crop of this patient holds the same tumour: 5095 voxels.
    assert regions.get("GTV_Mass").voxel_count == 5095


def test_raw_oblique_mr_rtstruct_is_read(data_dir) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("sts001-raw/MR_T2")
    volume = read_volume(root / "image")
    (mask_file,) = (root / "mask").iterdir()
    regions = load_regions(mask_file, volume)
    assert regions.names == ["GTV_Mass", "GTV_Edema"]
    assert 0 < regions.get("GTV_Mass").voxel_count < regions.get("GTV_Edema").voxel_count


@pytest.mark.parametrize("shift_mm", [3.27 / 2, 1000.0])  # between slices; outside the series
def test_one_stray_contour_refuses_only_its_roi(data_dir, tmp_path: Path, shift_mm: float) -> None:  # type: ignore[no-untyped-def]
    root = data_dir(IBSI_PET)
    volume = read_volume(root / "image")
    edited = with_stray_roi(root / "mask/RS.dcm", tmp_path / "RS.dcm", shift_mm)
    regions = load_regions(edited, volume)
    assert regions.names == ["GTV_Mass_PET"]
    assert regions.get("GTV_Mass_PET").voxel_count == 5095  # the good ROI is intact
    assert list(regions.refused) == [2]
    (warning,) = regions.warnings
    assert f"ROI {STRAY!r} (number 2)" in warning and "left out" in warning
    assert str(tmp_path) not in warning  # folder names may hold patient names


def test_a_file_whose_every_roi_is_stray_is_refused(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = data_dir(IBSI_PET)
    volume = read_volume(root / "image")
    edited = with_stray_roi(root / "mask/RS.dcm", tmp_path / "a.dcm", 1000.0)
    only_stray = with_stray_roi(edited, tmp_path / "b.dcm", 1000.0, roi="GTV_3")
    ds = pydicom.dcmread(only_stray)
    for sequence in ("StructureSetROISequence", "ROIContourSequence", "RTROIObservationsSequence"):
        del getattr(ds, sequence)[0]  # drop the good ROI 1
    ds.save_as(only_stray)
    with pytest.raises(MaskInputError, match=r"ROI 'GTV_\d' \(number [23]\): a contour lies"):
        load_regions(only_stray, volume)


def test_two_contour_items_for_one_roi_refuse_that_roi(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = data_dir(IBSI_PET)
    edited = with_stray_roi(root / "mask/RS.dcm", tmp_path / "RS.dcm", 0.0)  # ROI 2: a fine copy
    ds = pydicom.dcmread(edited)
    ds.ROIContourSequence.append(copy.deepcopy(ds.ROIContourSequence[1]))  # ROI 2 again
    ds.save_as(edited)
    regions = load_regions(edited, read_volume(root / "image"))
    assert regions.names == ["GTV_Mass_PET"] and list(regions.refused) == [2]
    assert "more than one ROI Contour item" in regions.refused[2]
