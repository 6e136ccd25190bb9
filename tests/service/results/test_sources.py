"""A result derived from two series (CT and a PET resampled onto it) references both in every file.

The study is written as DICOM: a CT (1.5 × 2 × 3 mm) and a coarser PET (3 × 4 × 5 mm) of one
study and frame of reference, the PET's last plane 5 mm short of the CT's. The label map lies on
the CT; its files are written with both series as sources and read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from service.api.slice_stack import seg_source
from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import Volume, discover, load_volume, read_volume
from service.errors import DicomInputError
from service.labels import get_table
from service.masks import load_regions
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, write_outputs
from service.results.provenance import AlgorithmIdentity
from service.results.seg_writer import SegType
from service.results.sources import Sources, SourceSeries
from tests.dciodvfy import assert_valid

ALGORITHM = AlgorithmIdentity("pet-ct-model", "1.0.0")
STUDY = "1.2.826.0.1.3680043.8.498.71"
FRAME = "1.2.826.0.1.3680043.8.498.72"
CT_SERIES = f"{STUDY}.1"
PET_SERIES = f"{STUDY}.2"
CT_SHAPE = (24, 20, 6)
PET_SHAPE = (12, 10, 4)
PET_STEP_MM = 5.0
PURPOSE = ("121322", "DCM")  # CID 7202 Source image for image processing operation


def _affine(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


CT_AFFINE = _affine((1.5, 2.0, 3.0), (-20.0, 35.0, 110.0))  # planes at z 110 … 125
PET_AFFINE = _affine((3.0, 4.0, PET_STEP_MM), (-21.0, 34.0, 105.0))  # planes at z 105 … 120


def _labels() -> np.ndarray:
    labels = np.zeros(CT_SHAPE, dtype=np.uint16)
    labels[3:9, 3:8, 0:6] = 1  # every CT plane, the last beyond the PET's reach
    labels[12:18, 10:16, 2:4] = 2  # CT planes 2 and 3 (z 116 and 119)
    return labels


@dataclass
class Study:
    ct: Volume
    pet: Volume
    sources: Sources


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    folder = tmp_path_factory.mktemp("pet-ct")
    rng = np.random.default_rng(3)
    ct = SeriesSpec(
        modality="CT",
        study_instance_uid=STUDY,
        series_instance_uid=CT_SERIES,
        frame_of_reference_uid=FRAME,
        accession_number="A1",
    )
    write_series(folder / "ct", rng.normal(40, 5, CT_SHAPE).astype(np.float32), CT_AFFINE, ct)
    pet = SeriesSpec(
        modality="PT",
        study_instance_uid=STUDY,
        series_instance_uid=PET_SERIES,
        frame_of_reference_uid=FRAME,
        series_number=2,
        accession_number="A1",
        pet=PetAcquisition(
            injected_dose_bq=3.7e8,
            injection_datetime=datetime(2024, 1, 1, 9, 0),
            series_datetime=datetime(2024, 1, 1, 10, 0),
            patient_weight_kg=70.0,
        ),
    )
    values = rng.normal(5000, 100, PET_SHAPE).astype(np.float32)
    write_series(folder / "pet", values, PET_AFFINE, pet)
    (plan,) = discover([folder / "pet"]).plans
    volume = read_volume(folder / "ct")
    return Study(volume, load_volume(plan), Sources.of(volume, [SourceSeries.of_plan(plan)]))


@pytest.fixture(scope="module")
def written(study: Study, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    out = tmp_path_factory.mktemp("results")
    table = get_table("ct-organs")
    result = write_outputs(study.ct, _labels(), table, ALGORITHM, out, sources=study.sources)
    dicom = (ResultKind.SEG, ResultKind.RTSTRUCT, ResultKind.SR)
    return {kind.value: pydicom.dcmread(result.paths[kind]) for kind in dicom}


def _uids(volume: Volume) -> set[str]:
    return {s.sop_instance_uid for s in volume.slices}


def _pet_planes_read(study: Study, z_mm: float) -> set[str]:
    """The PET instances linear interpolation onto a CT plane at ``z_mm`` weighs (axial grids)."""
    return {s.sop_instance_uid for s in study.pet.slices if abs(s.position[2] - z_mm) < PET_STEP_MM}


def test_seg_references_every_instance_of_both_series(
    study: Study, written: dict[str, Dataset]
) -> None:
    seg = written["seg"]
    referenced = {
        str(item.SeriesInstanceUID): {
            str(i.ReferencedSOPInstanceUID) for i in item.ReferencedInstanceSequence
        }
        for item in seg.ReferencedSeriesSequence
    }
    assert referenced == {CT_SERIES: _uids(study.ct), PET_SERIES: _uids(study.pet)}
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == CT_SERIES  # primary first
    listed = {str(item.ReferencedSOPInstanceUID) for item in seg.SourceImageSequence}
    assert listed == _uids(study.ct) | _uids(study.pet)


def test_each_seg_frame_derives_from_its_ct_plane_and_the_pet_planes_read(
    study: Study, written: dict[str, Dataset]
) -> None:
    ct_plane = {s.sop_instance_uid: s for s in study.ct.slices}
    pet_uids = _uids(study.pet)
    seen_without_pet = False
    for frame in written["seg"].PerFrameFunctionalGroupsSequence:
        (derivation,) = frame.DerivationImageSequence
        first, *others = derivation.SourceImageSequence
        plane = ct_plane[str(first.ReferencedSOPInstanceUID)]
        assert first.SpatialLocationsPreserved == "YES"
        z = float(frame.PlanePositionSequence[0].ImagePositionPatient[2])
        assert z == pytest.approx(plane.position[2])
        expected = _pet_planes_read(study, z)
        assert {str(o.ReferencedSOPInstanceUID) for o in others} == expected
        assert len(others) == len(expected)
        seen_without_pet |= not expected
        for item in others:
            assert str(item.ReferencedSOPInstanceUID) in pet_uids
            assert item.SpatialLocationsPreserved == "NO"
            (purpose,) = item.PurposeOfReferenceCodeSequence
            assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == PURPOSE
    assert seen_without_pet, "no CT plane lies beyond the PET: the test would be weak"


def test_rtstruct_contours_stay_on_the_ct_and_the_pet_is_referenced(
    study: Study, written: dict[str, Dataset]
) -> None:
    rtstruct = written["rtstruct"]
    (frame,) = rtstruct.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == FRAME
    (referenced_study,) = frame.RTReferencedStudySequence
    assert referenced_study.ReferencedSOPInstanceUID == STUDY
    series = referenced_study.RTReferencedSeriesSequence
    assert [str(s.SeriesInstanceUID) for s in series] == [CT_SERIES, PET_SERIES]
    assert {str(i.ReferencedSOPInstanceUID) for i in series[0].ContourImageSequence} == _uids(
        study.ct
    )
    assert {str(i.ReferencedSOPInstanceUID) for i in series[1].ContourImageSequence} == _uids(
        study.pet
    )
    on = {
        str(image.ReferencedSOPInstanceUID)
        for roi in rtstruct.ROIContourSequence
        for contour in roi.ContourSequence
        for image in contour.ContourImageSequence
    }
    assert on and on <= _uids(study.ct)


def _items(node: Dataset) -> list[Dataset]:
    """Every content item under ``node``, depth first."""
    out = []
    for item in node.get("ContentSequence", []):
        out.append(item)
        out.extend(_items(item))
    return out


def _concept(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeValue)


def test_sr_lists_both_series_as_evidence_library_and_segment_sources(
    study: Study, written: dict[str, Dataset]
) -> None:
    sr, seg = written["sr"], written["seg"]
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    by_series = {
        str(s.SeriesInstanceUID): {str(i.ReferencedSOPInstanceUID) for i in s.ReferencedSOPSequence}
        for s in evidence.ReferencedSeriesSequence
    }
    assert by_series == {
        str(seg.SeriesInstanceUID): {str(seg.SOPInstanceUID)},
        CT_SERIES: _uids(study.ct),
        PET_SERIES: _uids(study.pet),
    }
    (library,) = [i for i in _items(sr) if _concept(i) == "111028"]  # Image Library
    groups = [i for i in library.ContentSequence if _concept(i) == "126200"]
    images = [
        {
            str(e.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for e in g.ContentSequence
            if e.ValueType == "IMAGE"
        }
        for g in groups
    ]
    assert images == [_uids(study.ct), _uids(study.pet)]
    cited: dict[int, set[str]] = {}
    for group in [i for i in _items(sr) if _concept(i) == "125007"]:  # Measurement Group
        items = group.ContentSequence
        (segment,) = [i for i in items if _concept(i) == "121191"]  # Referenced Segment
        number = int(segment.ReferencedSOPSequence[0].ReferencedSegmentNumber)
        assert not [i for i in items if _concept(i) == "121232"]  # no Source series
        cited[number] = {
            str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for i in items
            if _concept(i) == "121233"  # Source image for segmentation
        }
    # Binary SEG segments are numbered in label order: segment n is label n. Each cites the CT
    # planes it spans and the PET planes those read.
    ct_by_k = [s.sop_instance_uid for s in study.ct.slices]
    zs = [s.position[2] for s in study.ct.slices]
    for number, (first, stop) in {1: (0, 6), 2: (2, 4)}.items():
        expected = set(ct_by_k[first:stop])
        for k in range(first, stop):
            expected |= _pet_planes_read(study, zs[k])
        assert cited[number] == expected
    assert cited[2] < cited[1]


def test_the_written_files_are_valid_and_read_back_on_the_ct(
    study: Study, written: dict[str, Dataset], tmp_path: Path
) -> None:
    for kind, ds in written.items():
        path = tmp_path / f"{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert_valid(path)
        if kind in ("seg", "rtstruct"):
            assert np.array_equal(load_regions(path, study.ct).to_label_map(), _labels())
    # The viewer shows the series the SEG lies on: the first it references.
    assert seg_source(tmp_path / "seg.dcm").sop_instance_uids == _uids(study.ct)
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    pixels = seg.get_pixels_by_source_instance(
        [s.sop_instance_uid for s in study.ct.slices], combine_segments=True
    )
    assert np.array_equal(np.transpose(pixels, (2, 1, 0)), _labels())


def test_label_map_seg_references_the_pet_too(study: Study, tmp_path: Path) -> None:
    options = OutputOptions(formats=[ResultKind.SEG], seg_type=SegType.LABELMAP)
    table = get_table("ct-organs")
    result = write_outputs(
        study.ct, _labels(), table, ALGORITHM, tmp_path, options, sources=study.sources
    )
    path = result.paths[ResultKind.SEG]
    seg = pydicom.dcmread(path)
    assert [str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence] == [
        CT_SERIES,
        PET_SERIES,
    ]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        _, *others = frame.DerivationImageSequence[0].SourceImageSequence
        z = float(frame.PlanePositionSequence[0].ImagePositionPatient[2])
        assert {str(o.ReferencedSOPInstanceUID) for o in others} == _pet_planes_read(study, z)
    # dciodvfy predates the label-map SOP class; highdicom's reader checks it instead, and
    # still finds each frame by its CT plane.
    pixels = hd.seg.segread(path).get_pixels_by_source_instance(
        [s.sop_instance_uid for s in study.ct.slices], combine_segments=True
    )
    assert np.array_equal(np.transpose(pixels, (2, 1, 0)), _labels())


def test_sources_must_start_with_the_series_the_result_lies_on(
    study: Study, tmp_path: Path
) -> None:
    swapped = Sources((study.sources.further[0], study.sources.primary))
    with pytest.raises(DicomInputError, match=f"first source is series {PET_SERIES}"):
        write_outputs(
            study.ct, _labels(), get_table("ct-organs"), ALGORITHM, tmp_path, sources=swapped
        )


def test_sources_of_another_study_are_refused(study: Study) -> None:
    other = SourceSeries(
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        frame_of_reference_uid=FRAME,
        modality="PT",
        images=study.sources.further[0].images,
        grid=PET_AFFINE,
        shape=PET_SHAPE,
        positions=study.sources.further[0].positions,
    )
    with pytest.raises(DicomInputError, match=r"of study 1\.2\.3, not of the primary"):
        Sources((study.sources.primary, other))
