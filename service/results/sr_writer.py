"""Comprehensive 3D SR (TID 1500) with one measurement group per SEG segment (highdicom)."""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from service.dicom.volume import Volume
from service.errors import DicomInputError
from service.library_logging import library_message
from service.qc.structures import StructureQc
from service.regions import distinct_names
from service.results.measurements import MeasurementReportData, SegmentMeasurements
from service.results.provenance import (
    MANUFACTURER,
    STUDY_KEYWORDS,
    AlgorithmIdentity,
    DerivedSeries,
    clip_copied_values,
)
from service.results.qc_content import SrQuality, add_reasons, algorithm_id, evaluations
from service.results.source_attributes import state_deidentification
from service.results.sources import Sources, checked_sources

_CC = hd.sr.CodedConcept
_Group = (
    hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
)
_ML = _CC("ml", "UCUM", "milliliter")
_GRAM = _CC("g", "UCUM", "gram")
_CM2 = _CC("cm2", "UCUM", "square centimeter")
_HU = _CC("[hnsf'U]", "UCUM", "Hounsfield unit")
_ARBITRARY = _CC("[arb'U]", "UCUM", "arbitrary unit")
# SUV concept, UCUM unit and calculation method per fedseg SUV type (DICOM CID 85, 7180, 7181).
_SUV = {
    "bw": (
        _CC("126401", "DCM", "SUVbw"),
        _CC("g/ml{SUVbw}", "UCUM", "Standardized Uptake Value body weight"),
        codes.DCM.SUVBodyWeightCalculationMethod,
    ),
    "lbm": (
        _CC("126402", "DCM", "SUVlbm"),
        _CC("g/ml{SUVlbm}", "UCUM", "Standardized Uptake Value lean body mass (James)"),
        codes.DCM.SUVLeanBodyMassCalculationMethod,
    ),
    "lbm-james128": (
        _CC("126406", "DCM", "SUVlbm(James128)"),
        _CC(
            "g/ml{SUVlbm(James128)}",
            "UCUM",
            "Standardized Uptake Value lean body mass (James 128 multiplier)",
        ),
        codes.DCM.SUVLeanBodyMassCalculationMethodUsing128Multiplier,
    ),
    "lbm-janma": (
        _CC("126405", "DCM", "SUVlbm(Janma)"),
        _CC("g/ml{SUVlbm(Janma)}", "UCUM", "Standardized Uptake Value lean body mass (Janma)"),
        codes.DCM.SUVLeanBodyMassCalculationJanmahasatianMethod,
    ),
    "bsa": (
        _CC("126403", "DCM", "SUVbsa"),
        _CC("cm2/ml{SUVbsa}", "UCUM", "Standardized Uptake Value body surface area"),
        codes.DCM.SUVBodySurfaceAreaCalculationMethod,
    ),
    "ibw": (
        _CC("126404", "DCM", "SUVibw"),
        _CC("g/ml{SUVibw}", "UCUM", "Standardized Uptake Value ideal body weight"),
        codes.DCM.SUVIdealBodyWeightCalculationMethod,
    ),
}
# Imaging procedures (CID 100): "whole body" only when the source says so (BodyPartExamined).
_PROCEDURES = {
    "PT": _CC("44136-0", "LN", "PET unspecified body region"),
    "CT": _CC("25045-6", "LN", "CT unspecified body region"),
    "MR": _CC("25056-3", "LN", "MRI unspecified body region"),
}
_WHOLE_BODY = {"PT": _CC("44139-4", "LN", "PET whole body")}
# BodyPartExamined defined terms → SNOMED CT (PS3.16 Annex L), for the findings' site.
_BODY_PARTS = {
    "WHOLEBODY": _CC("38266002", "SCT", "Entire body"),
    "HEAD": _CC("69536005", "SCT", "Head"),
    "BRAIN": _CC("12738006", "SCT", "Brain"),
    "NECK": _CC("45048000", "SCT", "Neck"),
    "HEADNECK": _CC("774007", "SCT", "Head and Neck"),
    "CHEST": _CC("51185008", "SCT", "Thorax"),
    "ABDOMEN": _CC("818981001", "SCT", "Abdomen"),
    "PELVIS": _CC("816092008", "SCT", "Pelvis"),
    "CHESTABDOMEN": _CC("416550000", "SCT", "Chest and Abdomen"),
    "ABDOMENPELVIS": _CC("818982008", "SCT", "Abdomen and Pelvis"),
    "EXTREMITY": _CC("66019005", "SCT", "Limb"),
}


def write_sr(
    volume: Volume,
    seg: Dataset | None,
    report: MeasurementReportData,
    algorithm: AlgorithmIdentity,
    series: DerivedSeries | None = None,
    quality: SrQuality | None = None,
    sources: Sources | None = None,
    slabs: Mapping[int, tuple[int, int]] | None = None,
) -> Dataset:
    """Build a Comprehensive 3D SR whose groups reference the segments of ``seg``.

    With ``quality``, every group carries its structure's quality finding and reasons, and
    each structure QC withheld from ``seg`` gets a group of its own saying so (TID 1501, no
    segment to reference). Without a SEG (everything withheld) the SR cites the source image.
    ``sources`` are the series the segments were derived from, ``volume``'s first (default:
    ``volume``'s alone): the Image Library lists them, the evidence holds their instances, and
    each group cites what its segment was derived from; ``slabs`` gives the planes
    ``first``..``stop - 1`` of ``volume`` each segment number spans (default: all).

    Raises
    ------
    DicomInputError
        If a measured segment is not in ``seg`` or highdicom refuses the content.
    """
    series = series or DerivedSeries(series_number=902, series_description="fedseg measurements")
    sources = checked_sources(volume, sources)
    slabs = slabs or {}
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence} if seg else {}
    quality = quality or SrQuality()
    for measured in report.segments:
        if measured.segment_number not in segments | quality.withheld:
            raise DicomInputError(
                f"segment {measured.segment_number} ({measured.name}) is not in the SEG; "
                "write the SR from the SEG it measures"
            )
    tracking = distinct_names([m.name for m in report.segments])
    body_part = str(volume.header.get("BodyPartExamined", "")).strip().upper()
    groups: list[_Group] = []
    for measured, identifier in zip(report.segments, tracking, strict=True):
        number = measured.segment_number
        outcome = quality.outcomes.get(number)
        group: _Group
        if seg is not None and number in segments:
            slab = slabs.get(number, (0, volume.shape[2]))
            derived_from = sources.segmentation_sources(*slab)
            group = _group(
                measured,
                identifier,
                segments[number],
                seg,
                derived_from,
                volume.modality,
                body_part,
            )
            if outcome is not None:
                _evaluate(group, outcome, algorithm)
        else:
            group = _withheld_group(measured, identifier, quality.withheld[number], volume)
            _evaluate(group, outcome, algorithm, withheld=True)
        groups.append(group)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=algorithm.name,
            manufacturer_name=MANUFACTURER,
            model_name=algorithm.name,
        ),
    )
    procedure = _PROCEDURES.get(volume.modality, _PROCEDURES["CT"])
    if body_part == "WHOLEBODY":
        procedure = _WHOLE_BODY.get(volume.modality, procedure)
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
    _add_image_library(content, sources)
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=[seg if seg is not None else volume.header, *sources.instance_records()],
            content=content[0],
            series_instance_uid=hd.UID(),
            series_number=series.series_number,
            sop_instance_uid=hd.UID(),
            instance_number=series.instance_number,
            manufacturer=MANUFACTURER,
            series_description=series.series_description,
        )
    except (ValueError, TypeError) as exc:
        raise DicomInputError(f"highdicom refused the SR content: {library_message(exc)}") from exc
    clip_copied_values(sr, STUDY_KEYWORDS)
    state_deidentification(sr, seg if seg is not None else volume.header)
    return sr


def _add_image_library(content: hd.sr.MeasurementReport, sources: Sources) -> None:
    """Put the Image Library (TID 1600) where TID 1500 has it: before the measurements."""
    items = content[0].ContentSequence
    measurements = codes.DCM.ImagingMeasurements.value
    at = next(
        (
            n
            for n, item in enumerate(items)
            if item.ConceptNameCodeSequence[0].CodeValue == measurements
        ),
        len(items),
    )
    items.insert(at, sources.image_library())


def _withheld_group(
    measured: SegmentMeasurements, identifier: str, finding: hd.sr.CodedConcept, volume: Volume
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """A structure QC withheld from the SEG: its measurements, with no segment to cite."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=identifier[:64]),
        finding_type=finding,
        measurements=_measurements(measured, volume.modality),
    )


def _evaluate(
    group: _Group, outcome: StructureQc | None, algorithm: AlgorithmIdentity, withheld: bool = False
) -> None:
    """Add the algorithm (with its intended use), the quality finding and its reasons."""
    container = group[0]
    identification = algorithm_id(algorithm)
    for item in [*identification, *(e for q in evaluations(outcome, withheld) for e in q)]:
        container.ContentSequence.append(item)
    add_reasons(group, outcome, withheld)


def _finding_sites(type_item: Dataset, body_part: str) -> list[hd.sr.FindingSite]:
    """Where the finding is.

    An organ with its laterality, as the SEG codes it; otherwise the body part the source
    examined (BodyPartExamined), when it is a known term.
    """
    modifiers = type_item.get("SegmentedPropertyTypeModifierCodeSequence") or []
    if modifiers:
        side = modifiers[0]
        return [
            hd.sr.FindingSite(
                anatomic_location=_concept(type_item),
                laterality=_concept(side),
            )
        ]
    region = _BODY_PARTS.get(body_part)
    return [hd.sr.FindingSite(anatomic_location=region)] if region is not None else []


def _concept(item: Dataset) -> hd.sr.CodedConcept:
    return _CC(item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)


def _group(
    measured: SegmentMeasurements,
    identifier: str,
    segment: Dataset,
    seg: Dataset,
    derived_from: list[hd.sr.SourceImageForSegmentation] | hd.sr.SourceSeriesForSegmentation,
    modality: str,
    body_part: str,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    type_item = segment.SegmentedPropertyTypeCodeSequence[0]
    if isinstance(derived_from, hd.sr.SourceSeriesForSegmentation):
        series, images = derived_from, None
    else:
        series, images = None, derived_from
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=str(segment.get("TrackingUID") or hd.UID()), identifier=identifier[:64]
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID,
            sop_instance_uid=seg.SOPInstanceUID,
            segment_number=measured.segment_number,
            source_series=series,
            source_images=images,
        ),
        finding_type=_concept(type_item),
        finding_sites=_finding_sites(type_item, body_part),
        measurements=_measurements(measured, modality),
    )


def _measurements(measured: SegmentMeasurements, modality: str) -> list[hd.sr.Measurement]:
    items = [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=measured.volume_ml,
            unit=_ML,
            method=_CC("126030", "DCM", "Sum of segmented voxel volumes"),
        )
    ]
    pet = measured.pet
    if pet is not None and pet.suv_type in _SUV:
        name, unit, method = _SUV[pet.suv_type]
        for value, derivation in (
            (pet.suv_max, codes.SCT.Maximum),
            (pet.suv_mean, codes.SCT.Mean),
            (pet.suv_median, codes.SCT.Median),
            (pet.suv_peak_local, codes.DCM.PeakValueWithinROI),
        ):
            if value is not None:
                items.append(
                    hd.sr.Measurement(
                        name=name, value=value, unit=unit, derivation=derivation, method=method
                    )
                )
        items.append(hd.sr.Measurement(name=codes.DCM.MetabolicVolume, value=pet.mtv_ml, unit=_ML))
        # TLG = SUVmean × MTV: g for the g/mL SUVs, cm² for SUVbsa (cm²/mL).
        tlg_unit = _CM2 if pet.suv_type == "bsa" else _GRAM
        items.append(
            hd.sr.Measurement(name=codes.DCM.TotalLesionGlycolysis, value=pet.tlg, unit=tlg_unit)
        )
        return items
    stats = measured.intensity
    if stats is None or modality not in ("CT", "MR"):
        return items
    name = codes.DCM.AttenuationCoefficient if modality == "CT" else codes.DCM.MRSignalIntensity
    unit = _HU if modality == "CT" else _ARBITRARY
    for value, derivation in (
        (stats.mean, codes.SCT.Mean),
        (stats.std, codes.SCT.StandardDeviation),
        (stats.min, codes.SCT.Minimum),
        (stats.max, codes.SCT.Maximum),
    ):
        if value is not None:
            items.append(
                hd.sr.Measurement(name=name, value=value, unit=unit, derivation=derivation)
            )
    return items
