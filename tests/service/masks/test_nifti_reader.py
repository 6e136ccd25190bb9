from pathlib import Path

import numpy as np
import pytest

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels import get_table
from service.masks import load_regions
from service.nifti import write_nifti


def _volume(shape: tuple[int, int, int] = (8, 7, 5)) -> Volume:
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-10.0, 4.0, 30.0)
    return Volume(
        array=np.zeros(shape, np.float32), affine=affine, modality="CT",
        series_instance_uid="1.2.3", study_instance_uid="1.2", frame_of_reference_uid="",
        series_description="", stack_label="", slices=(), headers=(),
    )  # fmt: skip


def _labels(shape: tuple[int, int, int]) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:4, 2:5, 1:3] = 1
    labels[5, 1, 4] = 3
    return labels


def test_flipped_and_permuted_nifti_lands_voxel_for_voxel(tmp_path: Path) -> None:
    volume = _volume()
    labels = _labels(volume.shape)
    # Store the map with i flipped and j/k swapped; the affine says so.
    stored = np.transpose(labels[::-1], (0, 2, 1))
    affine = volume.affine[:, [0, 2, 1, 3]].copy()
    affine[:, 0] *= -1
    affine[:3, 3] = volume.affine[:3, 3] + volume.affine[:3, 0] * (volume.shape[0] - 1)
    path = write_nifti(tmp_path / "m.nii.gz", stored, affine)
    regions = load_regions(path, volume, get_table("ct-organs"))
    assert regions.names == ["liver", "kidney_left"]
    assert np.array_equal(regions.to_label_map(), labels)
    assert regions.get("kidney_left").code.type.code == "64033007"  # type: ignore[union-attr]


def test_cropped_nifti_is_placed_at_its_offset(tmp_path: Path) -> None:
    volume = _volume()
    labels = _labels(volume.shape)
    affine = volume.affine.copy()
    affine[:3, 3] += volume.affine[:3, :3] @ np.array([1, 1, 1])
    path = write_nifti(tmp_path / "crop.nii", labels[1:, 1:, 1:], affine)
    back = load_regions(path, volume).to_label_map()
    assert np.array_equal(back, labels)


def test_nifti_elsewhere_is_refused(tmp_path: Path) -> None:
    volume = _volume()
    affine = volume.affine.copy()
    affine[:3, 3] += 1000.0
    path = write_nifti(tmp_path / "far.nii", _labels(volume.shape), affine)
    with pytest.raises(MaskInputError, match="does not overlap"):
        load_regions(path, volume)


def test_value_outside_the_table_is_refused(tmp_path: Path) -> None:
    volume = _volume()
    path = write_nifti(tmp_path / "m.nii", _labels(volume.shape) * 5, volume.affine)
    with pytest.raises(MaskInputError, match="not a label of pet-lesion"):
        load_regions(path, volume, get_table("pet-lesion"))
