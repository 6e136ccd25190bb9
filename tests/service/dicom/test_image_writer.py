from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import read_volume

PET = PetAcquisition(
    injected_dose_bq=3.7e8,
    injection_datetime=datetime(2024, 3, 5, 9, 12, 30),
    series_datetime=datetime(2024, 3, 5, 10, 13, 0),
    patient_weight_kg=72.5,
    patient_height_m=1.78,
    patient_sex="F",
)


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    x, y, z = axis
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + s * k + (1 - c) * k @ k


def _affine(directions: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = directions @ np.diag(spacing)
    a[:3, 3] = [-31.5, 12.25, -140.0]
    return a


# Direction matrices (columns: i, j, k in LPS) as scanners write them for each position.
AXIAL = {
    "HFS": np.diag([1.0, 1.0, 1.0]),
    "FFS": np.diag([-1.0, 1.0, -1.0]),
    "HFP": np.diag([-1.0, -1.0, 1.0]),
    "FFP": np.diag([1.0, -1.0, -1.0]),
}
OBLIQUE = _rotation(np.array([0.3, -0.5, 0.8]), 17.0)


def _values(modality: str, shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(7)
    if modality == "CT":
        return rng.integers(-1024, 3000, shape).astype(np.float64)
    if modality == "MR":
        return rng.integers(0, 4000, shape).astype(np.float64)
    # Bq/mL with a different peak per slice, so each slice gets its own slope.
    peaks = np.linspace(2e3, 4e4, shape[2])
    return rng.uniform(0, 1, shape) * peaks


def _dciodvfy_errors(paths: list[Path]) -> list[str]:
    errors = []
    for path in paths:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors += [
            f"{path.name}: {line}"
            for line in (result.stdout + result.stderr).splitlines()
            if "Error" in line
        ]
    return errors


def _spec(modality: str, position: str = "HFS", **kwargs: object) -> SeriesSpec:
    return SeriesSpec(
        modality=modality,
        patient_position=position,
        pet=PET if modality == "PT" else None,
        uid_seed="test-writer",
        **kwargs,  # type: ignore[arg-type]
    )


def _check_round_trip(tmp_path: Path, modality: str, affine: np.ndarray, position: str) -> None:
    shape = (11, 9, 4)
    array = _values(modality, shape)
    paths = write_series(tmp_path / modality, array, affine, _spec(modality, position))
    assert len(paths) == shape[2]
    assert _dciodvfy_errors(paths) == []
    volume = read_volume(tmp_path / modality)
    assert volume.modality == modality
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    if modality == "PT":
        slopes = np.array([float(h.RescaleSlope) for h in volume.headers])
        assert len(np.unique(slopes)) == shape[2]  # per-slice slope
        error = np.abs(volume.array - array)
        assert np.all(error <= slopes[None, None, :] / 2 + 1e-3 * slopes[None, None, :])
    else:
        np.testing.assert_array_equal(volume.array, array.astype(np.float32))


@pytest.mark.parametrize("modality", ["CT", "PT", "MR"])
@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP"])
def test_axial_round_trip(tmp_path: Path, modality: str, position: str) -> None:
    affine = _affine(AXIAL[position], (0.78, 0.91, 2.5))
    _check_round_trip(tmp_path, modality, affine, position)


@pytest.mark.parametrize("modality", ["CT", "PT", "MR"])
def test_oblique_round_trip(tmp_path: Path, modality: str) -> None:
    affine = _affine(OBLIQUE, (1.1, 0.9, 3.0))
    _check_round_trip(tmp_path, modality, affine, "FFP")


def test_plane_attributes_follow_affine(tmp_path: Path) -> None:
    affine = _affine(AXIAL["FFS"], (0.7, 0.8, 2.0))
    array = _values("CT", (6, 5, 3))
    paths = write_series(tmp_path, array, affine, _spec("CT", "FFS"))
    ds = pydicom.dcmread(paths[2])
    np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [-1, 0, 0, 0, 1, 0])
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient], affine[:3, 3] + [0, 0, -4]
    )
    np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [0.8, 0.7])
    assert float(ds.SliceThickness) == pytest.approx(2.0)
    assert ds.PatientPosition == "FFS"
    np.testing.assert_array_equal(ds.pixel_array, array[:, :, 2].T)


def test_pet_suv_attributes(tmp_path: Path) -> None:
    paths = write_series(tmp_path, _values("PT", (4, 4, 2)), np.eye(4), _spec("PT"))
    ds = pydicom.dcmread(paths[0])
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(drug.RadionuclideTotalDose) == pytest.approx(3.7e8)
    assert float(drug.RadionuclideHalfLife) == pytest.approx(6586.2)
    assert drug.RadiopharmaceuticalStartTime == "091230.000000"[:13]
    assert drug.RadiopharmaceuticalStartDateTime.startswith("20240305091230")
    assert (ds.SeriesDate, ds.SeriesTime[:6]) == ("20240305", "101300")
    assert (ds.AcquisitionDate, ds.AcquisitionTime[:6]) == ("20240305", "101300")
    assert float(ds.PatientWeight) == pytest.approx(72.5)
    assert float(ds.PatientSize) == pytest.approx(1.78)
    assert (ds.Units, ds.DecayCorrection) == ("BQML", "START")
    assert {"DECY", "ATTN"} <= set(ds.CorrectedImage)
    assert ds.PatientSex == "F"
    elapsed = 3630.0
    expected = 72.5e3 / (3.7e8 * 2 ** (-elapsed / 6586.2))
    assert PET.suv_bw_factor() == pytest.approx(expected, rel=1e-12)


def test_left_handed_affine_reads_back_reversed(tmp_path: Path) -> None:
    affine = _affine(np.diag([1.0, 1.0, -1.0]), (1.0, 1.0, 2.0))
    array = _values("CT", (5, 4, 3))
    write_series(tmp_path, array, affine, _spec("CT"))
    volume = read_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, array[:, :, ::-1])
    flipped = affine.copy()
    flipped[:3, 2] *= -1
    flipped[:3, 3] = affine[:3, 3] + 2 * affine[:3, 2]
    np.testing.assert_allclose(volume.affine, flipped, atol=1e-4)


def test_same_seed_same_uids_and_bytes(tmp_path: Path) -> None:
    array = _values("MR", (4, 4, 2))
    a = write_series(tmp_path / "a", array, np.eye(4), _spec("MR"))
    b = write_series(tmp_path / "b", array, np.eye(4), _spec("MR"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    c = write_series(tmp_path / "c", array, np.eye(4), SeriesSpec(modality="MR"))
    assert pydicom.dcmread(c[0]).SOPInstanceUID != pydicom.dcmread(a[0]).SOPInstanceUID


def test_refuses_sheared_affine(tmp_path: Path) -> None:
    affine = np.eye(4)
    affine[1, 2] = 0.3  # gantry tilt
    with pytest.raises(ValueError, match="sheared"):
        write_series(tmp_path, np.zeros((3, 3, 3)), affine, _spec("CT"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modality": "US"}, "US"),
        ({"modality": "PT"}, "needs PET"),
        ({"modality": "CT", "patient_position": "XYZ"}, "XYZ"),
    ],
)
def test_spec_validates(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SeriesSpec(**kwargs)  # type: ignore[arg-type]


def test_refuses_values_outside_int16(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16-bit"):
        write_series(tmp_path, np.full((2, 2, 1), 40000.0), np.eye(4), _spec("CT"))
