from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import Volume, read_volume
from service.labels import get_table
from service.pet.body_size import SuvType
from service.regions import RegionSet
from service.results.measurements import build_report
from service.results.measurements_json import report_to_dict, write_measurements_json
from service.results.provenance import AlgorithmIdentity
from service.results.seg_writer import write_seg
from service.results.sr_writer import write_sr
from tests.dciodvfy import assert_valid
from tests.result_series import affine_for, phantom_labels

ALGORITHM = AlgorithmIdentity("fedseg-unet", "1.2.0")


def _report(volume: Volume) -> tuple[pydicom.Dataset, object]:
    table = get_table("ct-organs")
    regions = RegionSet.from_label_map(phantom_labels(), volume.affine, table)
    seg = write_seg(volume, regions, table, ALGORITHM)
    report = build_report(volume, regions, seg.segment_numbers, "fedseg-unet 1.2.0")
    return seg.dataset, report


def _numbers(sr: pydicom.Dataset) -> dict[tuple[str, str], list[tuple[str, float, str]]]:
    """Per group (tracking id, referenced segment): (concept, value, unit) of every NUM."""
    content = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    out: dict[tuple[str, str], list[tuple[str, float, str]]] = {}
    groups = content.get_volumetric_roi_measurement_groups()
    for group in groups:
        reference = group.referenced_segment[0].ReferencedSOPSequence[0]  # the IMAGE item
        assert reference.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
        key = (group.tracking_identifier, str(reference.ReferencedSegmentNumber))
        out[key] = [
            (m.name.meaning, float(m.value), m.unit.value) for m in group.get_measurements()
        ]
    return out


@pytest.mark.parametrize("modality", ["PT", "CT", "MR"])
def test_sr_is_valid_and_references_every_segment(
    make_series: Callable[[str, str], Volume], tmp_path: Path, modality: str
) -> None:
    volume = make_series(modality, "axial")
    seg, report = _report(volume)
    sr = write_sr(volume, seg, report, ALGORITHM)  # type: ignore[arg-type]
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    assert_valid(path)
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == volume.study_instance_uid
    assert ds.PatientID == volume.header.PatientID
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
    groups = _numbers(ds)
    assert sorted(groups) == [("kidney_left", "3"), ("liver", "1"), ("spleen", "2")]
    liver = groups[("liver", "1")]
    voxel_ml = abs(np.linalg.det(volume.affine[:3, :3])) / 1000.0
    assert ("Volume", pytest.approx(int((phantom_labels() == 1).sum()) * voxel_ml), "ml") in liver
    concepts = {(name, unit) for name, _, unit in liver}
    if modality == "PT":
        assert ("SUVbw", "g/ml{SUVbw}") in concepts
        assert ("Metabolic Volume", "ml") in concepts
        assert ("Total Lesion Glycolysis", "g") in concepts
        assert sum(1 for name, _, _ in liver if name == "SUVbw") == 4  # max, mean, median, peak
    elif modality == "CT":
        assert ("Attenuation Coefficient", "[hnsf'U]") in concepts
    else:
        assert ("MR signal intensity", "[arb'U]") in concepts


def test_json_carries_the_same_numbers_as_the_sr(
    make_series: Callable[[str, str], Volume], tmp_path: Path
) -> None:
    volume = make_series("PT", "feet-first")
    seg, report = _report(volume)
    sr = write_sr(volume, seg, report, ALGORITHM)  # type: ignore[arg-type]
    data = json.loads(write_measurements_json(report, tmp_path / "m.json").read_text())  # type: ignore[arg-type]
    assert data == report_to_dict(report)  # type: ignore[arg-type]
    by_name = {s["name"]: s for s in data["segments"]}
    groups = _numbers(sr)
    for (name, number), measures in groups.items():
        segment = by_name[name]
        assert segment["segment_number"] == int(number)
        suv = {v for n, v, _ in measures if n == "SUVbw"}
        pet = segment["pet"]
        assert {pet["suv_max"], pet["suv_mean"], pet["suv_median"], pet["suv_peak_local"]} == suv
        assert pet["tlg"] == pytest.approx(pet["suv_mean"] * pet["mtv_ml"])
        assert pet["suv_max"] >= pet["suv_mean"] > 0


def test_sr_refuses_a_segment_missing_from_the_seg(
    make_series: Callable[[str, str], Volume],
) -> None:
    from service.errors import DicomInputError
    from service.results.measurements import MeasurementReportData, SegmentMeasurements

    volume = make_series("CT", "axial")
    seg, _ = _report(volume)
    bogus = MeasurementReportData("CT", "", "", "x", [SegmentMeasurements(9, "x", 1, 1.0)])
    with pytest.raises(DicomInputError, match="segment 9"):
        write_sr(volume, seg, bogus, ALGORITHM)


def test_sr_findings_carry_laterality_procedure_and_model(
    make_series: Callable[[str, str], Volume],
) -> None:
    volume = make_series("PT", "axial")
    seg, report = _report(volume)
    sr = write_sr(volume, seg, report, ALGORITHM)  # type: ignore[arg-type]
    content = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    groups = {g.tracking_identifier: g for g in content.get_volumetric_roi_measurement_groups()}
    (site,) = groups["kidney_left"].finding_sites
    assert site.value == hd.sr.CodedConcept("64033007", "SCT", "Kidney")
    assert site.laterality == hd.sr.CodedConcept("7771000", "SCT", "Left")
    assert volume.header.BodyPartExamined == "CHEST"
    (region,) = groups["liver"].finding_sites  # no laterality: the body part examined
    assert region.value == hd.sr.CodedConcept("51185008", "SCT", "Thorax")
    procedures = [
        i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121058"
    ]
    assert procedures[0].ConceptCodeSequence[0].CodeMeaning == "PET unspecified body region"
    observer = [
        i
        for i in _walk(sr)
        if i.ConceptNameCodeSequence[0].CodeMeaning == "Device Observer Model Name"
    ]
    assert observer[0].TextValue == ALGORITHM.name


def _walk(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    items = []
    for item in ds.get("ContentSequence", []):
        items.append(item)
        items.extend(_walk(item))
    return items


@pytest.mark.parametrize(
    ("suv_type", "concept", "unit", "method", "tlg_unit"),
    [  # DICOM PS3.16: SUV concepts 126401-126406, CID 85 units, methods 126410-126415
        (SuvType.BW, "126401", "g/ml{SUVbw}", "126410", "g"),
        (SuvType.LBM, "126402", "g/ml{SUVlbm}", "126411", "g"),
        (SuvType.LBM_JAMES128, "126406", "g/ml{SUVlbm(James128)}", "126415", "g"),
        (SuvType.LBM_JANMAHASATIAN, "126405", "g/ml{SUVlbm(Janma)}", "126414", "g"),
        (SuvType.IBW, "126404", "g/ml{SUVibw}", "126413", "g"),
        (SuvType.BSA, "126403", "cm2/ml{SUVbsa}", "126412", "cm2"),  # TLG = SUVmean x MTV
    ],
)
def test_each_suv_type_is_coded_as_dicom_names_it(
    pet_with_body_size: Volume,
    suv_type: SuvType,
    concept: str,
    unit: str,
    method: str,
    tlg_unit: str,
) -> None:
    volume = pet_with_body_size
    table = get_table("ct-organs")
    regions = RegionSet.from_label_map(phantom_labels(), volume.affine, table)
    seg = write_seg(volume, regions, table, ALGORITHM)
    report = build_report(volume, regions, seg.segment_numbers, "fedseg-unet 1.2.0", suv_type)
    sr = write_sr(volume, seg.dataset, report, ALGORITHM)
    content = hd.sr.Comprehensive3DSR.from_dataset(sr).content
    group = content.get_volumetric_roi_measurement_groups()[0]
    measurements = group.get_measurements()
    suvs = [m for m in measurements if m.name.value == concept]
    assert len(suvs) == 4 and {m.unit.value for m in suvs} == {unit}
    assert {m.method.value for m in suvs if m.method is not None} == {method}
    (tlg,) = [m for m in measurements if m.name.meaning == "Total Lesion Glycolysis"]
    assert tlg.unit.value == tlg_unit


@pytest.fixture(scope="module")
def pet_with_body_size(tmp_path_factory: pytest.TempPathFactory) -> Volume:
    """The phantom PET with a height and a sex, which every SUV type but SUVbw needs."""
    out = tmp_path_factory.mktemp("pet-body-size")
    pet = PetAcquisition(
        injected_dose_bq=3.7e8,
        injection_datetime=datetime(2024, 1, 1, 9, 0),
        series_datetime=datetime(2024, 1, 1, 10, 0),
        patient_weight_kg=70.0,
        patient_height_m=1.75,
        patient_sex="M",
    )
    values = np.full(phantom_labels().shape, 5000.0, dtype=np.float32)
    write_series(out, values, affine_for("axial"), SeriesSpec(modality="PT", pet=pet))
    return read_volume(out)
