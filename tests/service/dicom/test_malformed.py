"""Malformed input gives a clear error that names the file or series."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.dicom.volume import read_volume
from service.errors import DicomGeometryError, DicomInputError

DataDir = Callable[[str], Path]
CT = "ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image"


@pytest.fixture()
def ct_copy(data_dir: DataDir, tmp_path: Path) -> Path:
    target = tmp_path / "ct"
    shutil.copytree(data_dir(CT), target)
    return target


def _sorted_by_position(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.dcm"))
    return sorted(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))


def test_non_dicom_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("this is not DICOM")
    with pytest.raises(DicomInputError, match=r"notes\.dcm: not a DICOM file"):
        read_volume(path)


def test_folder_without_dicom_says_so(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "image.bin").write_bytes(b"\x00" * 300)
    with pytest.raises(DicomInputError, match=r"no DICOM files found .*2 other files skipped"):
        read_volume(tmp_path)


def test_truncated_file_is_named(ct_copy: Path) -> None:
    victim = sorted(ct_copy.glob("*.dcm"))[10]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 20000])
    with pytest.raises(DicomInputError, match=rf"{victim.name}"):
        read_volume(ct_copy)


def test_missing_slice_names_series_and_gap(ct_copy: Path) -> None:
    files = _sorted_by_position(ct_copy)
    files[30].unlink()
    series_uid = pydicom.dcmread(files[0]).SeriesInstanceUID
    with pytest.raises(DicomGeometryError, match=rf"series {series_uid}: 1 gap.*missing slice"):
        read_volume(ct_copy)


def test_slice_of_different_size_is_named(ct_copy: Path) -> None:
    victim = _sorted_by_position(ct_copy)[20]
    ds = pydicom.dcmread(victim)
    small = ds.pixel_array[::2, ::2].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelData = small.tobytes()
    ds.save_as(victim)
    with pytest.raises(DicomInputError, match=rf"1 slice\(s\) of size 101x99.*{victim.name}"):
        read_volume(ct_copy)


def test_mixed_orientations_become_separate_volumes(ct_copy: Path, tmp_path: Path) -> None:
    # A localiser-like plane of another orientation in the same series is its own stack.
    ds = pydicom.dcmread(sorted(ct_copy.glob("*.dcm"))[0])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(ct_copy / "coronal.dcm")
    with pytest.raises(DicomInputError, match="expected one volume, found 2"):
        read_volume(ct_copy)


def test_repeated_positions_split_by_echo(ct_copy: Path) -> None:
    # Two echoes at the same positions: split into two volumes, not one with doubled slices.
    for path in sorted(ct_copy.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.EchoNumbers = 1
        ds.save_as(path)
        ds.EchoNumbers = 2
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(path.with_name("echo2_" + path.name))
    from service.dicom.volume import load_volumes

    volumes = load_volumes(ct_copy)
    assert sorted(v.stack_label for v in volumes) == ["EchoNumbers=1", "EchoNumbers=2"]
    assert all(v.shape[2] == 59 for v in volumes)
    assert not np.array_equal(volumes[0].array, volumes[1].array)


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DicomInputError, match="nowhere: no such file or directory"):
        read_volume(tmp_path / "nowhere")
