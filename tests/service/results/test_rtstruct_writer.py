from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from service.dicom.volume import Volume, read_volume
from service.errors import DicomInputError
from service.labels import get_table
from service.labels.registry import LabelTable
from service.masks import load_regions
from service.regions import RegionSet
from service.results.provenance import AlgorithmIdentity
from service.results.rtstruct_writer import _contour_data, write_rtstruct
from tests.dciodvfy import assert_valid
from tests.result_series import phantom_labels

ALGORITHM = AlgorithmIdentity("fedseg-unet", "1.2.0")
CASES = [
    ("CT", "axial"),
    ("CT", "oblique"),
    ("CT", "feet-first"),
    ("CT", "prone"),
    ("PT", "axial"),
    ("PT", "prone"),
    ("MR", "oblique"),
    ("MR", "feet-first"),
]


def _write(volume: Volume, labels: object, path: Path, task: str = "ct-organs") -> Path:
    result = write_rtstruct(volume, labels, get_table(task), ALGORITHM)  # type: ignore[arg-type]
    result.dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("modality", "geometry"), CASES)
def test_rtstruct_is_valid_and_round_trips_exactly(
    make_series: Callable[[str, str], Volume], tmp_path: Path, modality: str, geometry: str
) -> None:
    volume = make_series(modality, geometry)
    labels = phantom_labels()
    path = _write(volume, labels, tmp_path / "rt.dcm")
    assert_valid(path)
    back = load_regions(path, volume)
    assert back.names == ["Liver", "Spleen", "Kidney_L"]  # the TG-263 names
    assert np.array_equal(back.to_label_map(), labels)  # Dice 1.0, holes and islands included


def test_rtstruct_content(make_series: Callable[[str, str], Volume], tmp_path: Path) -> None:
    volume = make_series("CT", "axial")
    ds = pydicom.dcmread(_write(volume, phantom_labels(), tmp_path / "rt.dcm"))
    source = volume.header
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
        assert ds.get(keyword) == source.get(keyword), keyword
    for keyword in ("ReferringPhysicianName", "OperatorsName", "PositionReferenceIndicator"):
        assert keyword in ds  # the attributes rt-utils leaves out
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0]
    images = series.RTReferencedSeriesSequence[0].ContourImageSequence
    assert [i.ReferencedSOPInstanceUID for i in images] == [
        s.sop_instance_uid for s in volume.slices
    ]
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN"] * 3
    assert list(ds.ROIContourSequence[0].ROIDisplayColor) == [221, 130, 101]
    kidney = ds.ROIContourSequence[2].ContourSequence
    # Slice 2 of label 3 holds the ring's outer loop, its hole and the island inside the hole.
    on_slice_2 = [
        c
        for c in kidney
        if c.ContourImageSequence[0].ReferencedSOPInstanceUID == volume.slices[2].sop_instance_uid
    ]
    assert len(on_slice_2) == 3
    for contour in (c for roi in ds.ROIContourSequence for c in roi.ContourSequence):
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        assert int(contour.NumberOfContourPoints) >= 3
        assert len(contour.ContourData) == 3 * int(contour.NumberOfContourPoints)


def test_known_voxel_is_inside_its_contour_in_patient_space(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    # Independent check with the source file's own geometry (pydicom, not the volume reader).
    volume = make_series("MR", "oblique")
    labels = np.zeros(volume.shape, dtype=np.uint8)
    i, j, k = 5, 11, 3
    labels[i, j, k] = 1
    ds = pydicom.dcmread(_write(volume, labels, tmp_path / "rt.dcm", "mr-tumour"))
    (contour,) = ds.ROIContourSequence[0].ContourSequence
    source = pydicom.dcmread(volume.slices[k].path, stop_before_pixels=True)
    assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    iop = np.asarray(source.ImageOrientationPatient, float)
    row, column = iop[:3], iop[3:]
    spacing = np.asarray(source.PixelSpacing, float)
    ipp = np.asarray(source.ImagePositionPatient, float)
    points = np.asarray(contour.ContourData, float).reshape(-1, 3)
    # In-plane pixel units: x along the row cosine, y along the column cosine.
    x = (points - ipp) @ row / spacing[1]
    y = (points - ipp) @ column / spacing[0]
    normal = (points - ipp) @ np.cross(row, column)
    assert np.allclose(normal, 0, atol=1e-3)  # on the referenced slice
    assert sorted({round(v, 3) for v in x}) == [i - 0.5, i + 0.5]
    assert sorted({round(v, 3) for v in y}) == [j - 0.5, j + 0.5]
    assert ds.RTROIObservationsSequence[0].RTROIInterpretedType == "GTV"


def test_resampled_volume_is_refused(make_series: Callable[[str, str], Volume]) -> None:
    volume = make_series("CT", "axial")
    resampled = Volume(**{**volume.__dict__, "on_source_grid": False})
    with pytest.raises(DicomInputError, match="resampled"):
        write_rtstruct(resampled, phantom_labels(), None, ALGORITHM)


@pytest.mark.data
@pytest.mark.parametrize("modality", ["PET", "CT", "MR_T1"])
def test_ibsi_masks_round_trip_through_rtstruct(data_dir, tmp_path: Path, modality: str) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001") / modality
    volume = read_volume(root / "image")
    regions = load_regions(root / "mask/RS.dcm", volume)
    path = _write(volume, regions, tmp_path / "rt.dcm", "pet-lesion")
    assert_valid(path)
    back = load_regions(path, volume)
    assert np.array_equal(back.regions[0].mask, regions.regions[0].mask)


@pytest.mark.data
def test_real_oblique_series_round_trips(data_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    volume = read_volume(data_dir("rtstruct-rtutils/tests/oriented_data"))
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[10:40, 20:35, :] = 1
    labels[20:25, 25:30, 1] = 0
    path = _write(volume, labels, tmp_path / "rt.dcm", "mr-tumour")
    assert_valid(path)
    assert np.array_equal(load_regions(path, volume).to_label_map(), labels)


def test_label_map_and_region_set_give_the_same_contours(
    make_series: Callable[[str, str], Volume],
) -> None:
    volume = make_series("CT", "oblique")
    labels = phantom_labels()
    regions = RegionSet.from_label_map(labels, volume.affine, get_table("ct-organs"))
    from_map = write_rtstruct(volume, labels, get_table("ct-organs"), ALGORITHM)
    from_set = write_rtstruct(volume, regions, get_table("ct-organs"), ALGORITHM)
    assert from_map.roi_numbers == from_set.roi_numbers
    for a, b in zip(
        from_map.dataset.ROIContourSequence, from_set.dataset.ROIContourSequence, strict=True
    ):
        assert [list(c.ContourData) for c in a.ContourSequence] == [
            list(c.ContourData) for c in b.ContourSequence
        ]


@pytest.mark.parametrize(
    "values",
    [
        [-0.00001, 12.5, -249.51171875, 100.0, 0.0, 1e8 + 0.123456, -999999999.99],
        [-0.00001, 12.5, -249.51171875, 100.0, 0.0, 3e9, -7.123456789e11],  # pydicom's path
    ],
)
def test_contour_data_text_is_valid_ds(tmp_path: Path, values: list[float]) -> None:
    element = _contour_data(np.array(values))
    assert element.value is not None and len(element.value) % 2 == 0
    texts = element.value.decode("ascii").rstrip(" ").split("\\")
    assert float(texts[0]) == 0 and not texts[0].startswith("-")
    if abs(values[-1]) < 1e9:
        assert texts[:5] == ["0", "12.5", "-249.5117", "100", "0"]  # no trailing zeros
    for text, value in zip(texts, values, strict=True):
        assert len(text) <= 16
        assert abs(float(text) - value) <= max(5e-5, abs(value) * 1e-9), text
    item = Dataset()
    item[element.tag] = element
    item.set_original_encoding(False, True)
    ds = Dataset()
    ds.ContourSequence = [item]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "contour.dcm", implicit_vr=False, little_endian=True)
    back = pydicom.dcmread(tmp_path / "contour.dcm", force=True).ContourSequence[0]
    assert [float(v) for v in back.ContourData] == [float(t) for t in texts]


def test_roi_names_colours_and_types_follow_the_shipped_label_table(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    # A model manifest's copy of the table: no TG-263 names, left and right in one colour.
    shipped = get_table("ct-organs")
    copy = LabelTable(
        shipped.task,
        tuple(replace(e, tg263_name=None, color=(185, 102, 83)) for e in shipped.labels),
    )
    volume = make_series("CT", "axial")
    labels = phantom_labels()
    labels[labels == 2] = 4  # kidney_right
    labels[labels == 1] = 6  # spinal_cord
    ds = write_rtstruct(volume, labels, copy, ALGORITHM).dataset
    ds.save_as(tmp_path / "rt.dcm", enforce_file_format=True)
    assert_valid(tmp_path / "rt.dcm")
    names = [roi.ROIName for roi in ds.StructureSetROISequence]
    assert names == ["Kidney_L", "Kidney_R", "SpinalCord"]
    colours = [tuple(c.ROIDisplayColor) for c in ds.ROIContourSequence]
    assert colours[0] != colours[1]
    assert [o.RTROIInterpretedType for o in ds.RTROIObservationsSequence] == ["ORGAN"] * 3


def test_repeated_tg263_names_stay_tg263(make_series: Callable[[str, str], Volume]) -> None:
    volume = make_series("CT", "axial")
    table = get_table("pet-lesion")
    lesion = table.by_number(1)
    base = RegionSet.from_label_map(phantom_labels(), volume.affine, get_table("ct-organs"))
    regions = RegionSet(
        [replace(r, name="lesion", code=lesion) for r in base], base.shape, base.affine
    )
    ds = write_rtstruct(volume, regions, table, ALGORITHM).dataset
    assert [roi.ROIName for roi in ds.StructureSetROISequence] == ["GTV", "GTV_2", "GTV_3"]
