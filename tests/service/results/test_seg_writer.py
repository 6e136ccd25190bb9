from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.dicom.volume import Volume, read_volume
from service.errors import DicomInputError, MaskInputError
from service.labels import get_table
from service.masks import load_regions
from service.regions import Region, RegionSet
from service.results.provenance import AlgorithmIdentity
from service.results.seg_writer import SegType, write_seg
from tests.dciodvfy import assert_valid
from tests.result_series import phantom_labels

ALGORITHM = AlgorithmIdentity("fedseg-unet", "1.2.0")
CASES = [
    ("CT", "axial"),
    ("CT", "oblique"),
    ("CT", "feet-first"),
    ("CT", "prone"),
    ("PT", "axial"),
    ("PT", "feet-first"),
    ("MR", "oblique"),
    ("MR", "prone"),
]


def _write(volume: Volume, labels: np.ndarray, path: Path, seg_type: SegType) -> Path:
    result = write_seg(volume, labels, get_table("ct-organs"), ALGORITHM, seg_type)
    result.dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(("modality", "geometry"), CASES)
def test_binary_seg_is_valid_and_round_trips_exactly(
    make_series: Callable[[str, str], Volume], tmp_path: Path, modality: str, geometry: str
) -> None:
    volume = make_series(modality, geometry)
    labels = phantom_labels()
    path = _write(volume, labels, tmp_path / "seg.dcm", SegType.BINARY)
    assert_valid(path)
    back = load_regions(path, volume)
    assert back.names == ["Liver", "Spleen", "Left kidney"]  # the display names
    assert np.array_equal(back.to_label_map(), labels)


@pytest.mark.parametrize(("modality", "geometry"), [("CT", "oblique"), ("PT", "feet-first")])
def test_labelmap_seg_round_trips_and_highdicom_reads_it(
    make_series: Callable[[str, str], Volume], tmp_path: Path, modality: str, geometry: str
) -> None:
    # dciodvfy predates the label-map SOP class; highdicom's reader checks it instead.
    volume = make_series(modality, geometry)
    labels = phantom_labels()
    path = _write(volume, labels, tmp_path / "labelmap.dcm", SegType.LABELMAP)
    seg = hd.seg.segread(path)
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    assert seg.segmentation_type.value == "LABELMAP"
    pixels = seg.get_pixels_by_source_instance(
        [s.sop_instance_uid for s in volume.slices], combine_segments=True
    )
    assert np.array_equal(np.transpose(pixels, (2, 1, 0)), labels)
    assert np.array_equal(load_regions(path, volume).to_label_map(), labels)


def test_seg_content_codes_references_and_study(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    volume = make_series("CT", "axial")
    ds = pydicom.dcmread(_write(volume, phantom_labels(), tmp_path / "seg.dcm", SegType.BINARY))
    source = volume.header
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber", "StudyID"):
        assert ds.get(keyword) == source.get(keyword), keyword
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    referenced = {
        i.ReferencedSOPInstanceUID
        for s in ds.ReferencedSeriesSequence
        for i in s.ReferencedInstanceSequence
    }
    assert referenced == {s.sop_instance_uid for s in volume.slices}
    kidney = ds.SegmentSequence[2]
    assert kidney.SegmentLabel == "Left kidney"  # the display name
    assert kidney.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    type_item = kidney.SegmentedPropertyTypeCodeSequence[0]
    assert type_item.CodeValue == "64033007"
    assert type_item.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"
    algorithm = kidney.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("fedseg-unet", "1.2.0")
    assert len(kidney.RecommendedDisplayCIELabValue) == 3
    # Empty frames are omitted: label 2 occupies slices 2-4 only, so 3 of its 6 are left out.
    frames_per_segment: dict[int, int] = {}
    for item in ds.PerFrameFunctionalGroupsSequence:
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        frames_per_segment[number] = frames_per_segment.get(number, 0) + 1
    assert frames_per_segment == {1: 3, 2: 3, 3: 4}


def test_known_voxel_lands_at_its_patient_position_in_the_seg(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    # Independent check: the source file's own IPP/IOP/PixelSpacing, highdicom's frame lookup.
    volume = make_series("CT", "oblique")
    labels = np.zeros(volume.shape, dtype=np.uint16)
    i, j, k = 3, 8, 4
    labels[i, j, k] = 1
    path = _write(volume, labels, tmp_path / "one.dcm", SegType.BINARY)
    seg = hd.seg.segread(path)
    assert seg.NumberOfFrames == 1
    frame = seg.PerFrameFunctionalGroupsSequence[0]
    source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
    source = pydicom.dcmread(volume.slices[k].path, stop_before_pixels=True)
    assert source_uid == source.SOPInstanceUID
    assert np.allclose(
        frame.PlanePositionSequence[0].ImagePositionPatient, source.ImagePositionPatient, atol=1e-3
    )
    rows, columns = np.nonzero(seg.pixel_array)
    assert (int(rows[0]), int(columns[0])) == (j, i)
    iop = np.asarray(source.ImageOrientationPatient, float)
    spacing = np.asarray(source.PixelSpacing, float)
    position = (
        np.asarray(source.ImagePositionPatient, float)
        + iop[:3] * spacing[1] * columns[0]
        + iop[3:] * spacing[0] * rows[0]
    )
    assert np.allclose(position, (volume.affine @ [i, j, k, 1])[:3], atol=1e-3)


def test_resampled_volume_is_refused(make_series: Callable[[str, str], Volume]) -> None:
    volume = make_series("CT", "axial")
    resampled = Volume(**{**volume.__dict__, "on_source_grid": False})
    with pytest.raises(DicomInputError, match="resampled"):
        write_seg(resampled, phantom_labels(), None, ALGORITHM)


def test_empty_labels_are_refused(make_series: Callable[[str, str], Volume]) -> None:
    volume = make_series("CT", "axial")
    with pytest.raises(DicomInputError, match="nothing is segmented"):
        write_seg(volume, np.zeros(volume.shape, np.uint8), None, ALGORITHM)


@pytest.mark.data
@pytest.mark.parametrize("modality", ["PET", "CT", "MR_T1"])
def test_ibsi_masks_round_trip_through_seg(data_dir, tmp_path: Path, modality: str) -> None:  # type: ignore[no-untyped-def]
    root = data_dir("ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001") / modality
    volume = read_volume(root / "image")
    regions = load_regions(root / "mask/RS.dcm", volume)
    result = write_seg(volume, regions, get_table("pet-lesion"), ALGORITHM)
    path = tmp_path / "seg.dcm"
    result.dataset.save_as(path, enforce_file_format=True)
    assert_valid(path)
    back = load_regions(path, volume)
    assert np.array_equal(back.regions[0].mask, regions.regions[0].mask)


def test_overlapping_regions_give_a_binary_seg_with_overlap(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    volume = make_series("CT", "oblique")
    table = get_table("ct-organs")
    base = RegionSet.from_label_map(phantom_labels(), volume.affine, table)
    liver, spleen = base.get("liver"), base.get("spleen")
    grown = liver.mask | spleen.mask  # the liver region now also covers the spleen
    regions = RegionSet(
        [Region("liver", 1, grown, liver.code), spleen], volume.shape, volume.affine
    )
    result = write_seg(volume, regions, table, ALGORITHM)
    assert result.dataset.SegmentsOverlap == "YES"
    result.dataset.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    assert_valid(tmp_path / "seg.dcm")
    back = load_regions(tmp_path / "seg.dcm", volume)
    assert np.array_equal(back.get("Liver").mask, grown)
    assert np.array_equal(back.get("Spleen").mask, spleen.mask)
    with pytest.raises(MaskInputError, match="overlap"):
        write_seg(volume, regions, table, ALGORITHM, SegType.LABELMAP)


def test_label_map_and_region_set_give_the_same_frames(
    make_series: Callable[[str, str], Volume],
) -> None:
    volume = make_series("PT", "prone")
    labels = phantom_labels()
    table = get_table("ct-organs")
    regions = RegionSet.from_label_map(labels, volume.affine, table)
    from_map = write_seg(volume, labels, table, ALGORITHM).dataset
    from_set = write_seg(volume, regions, table, ALGORITHM).dataset
    assert from_map.SegmentsOverlap == "NO"
    assert from_map.NumberOfFrames == from_set.NumberOfFrames
    assert from_map.PixelData == from_set.PixelData
