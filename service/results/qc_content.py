"""QC and intended use in the result objects.

The SEG and RTSTRUCT are marked after they are written: SeriesDescription with the model,
version and ``RESEARCH USE ONLY``, SEG ContentDescription and RTSTRUCT
StructureSetDescription with the intended use (and what QC withheld), and under policy
``flag`` each flagged structure's SegmentDescription or ROIObservationDescription.

In the SR, one quality finding per structure, with its reasons.

Each structure's measurement group gets a qualitative evaluation "Quality Assessment"
(DCM 111050): Succeeded (DCM 111222), Failed (DCM 111224) or, for a warning, Indeterminate
(SCT 82334004), then one TEXT "Comment" (DCM 121106) per flagged check. A structure withheld
from the SEG and RTSTRUCT adds "Quality Issue" (DCM 113010) = "Rejected for Quality Reasons"
(DCM 113001), in a group of its own (TID 1501), since no SEG segment exists to reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import highdicom as hd
from highdicom.sr.templates import Template
from pydicom.dataset import Dataset

from service.qc.enum import QcPolicy, QcStatus
from service.qc.report import SeriesQc
from service.qc.structures import StructureQc
from service.results.crops import RegionCrop
from service.results.provenance import AlgorithmIdentity

_CC = hd.sr.CodedConcept
QUALITY_ASSESSMENT = _CC("111050", "DCM", "Quality Assessment")
QUALITY_ISSUE = _CC("113010", "DCM", "Quality Issue")
REJECTED = _CC("113001", "DCM", "Rejected for Quality Reasons")
COMMENT = _CC("121106", "DCM", "Comment")
_OUTCOME = {
    QcStatus.PASS: _CC("111222", "DCM", "Succeeded"),
    QcStatus.FAIL: _CC("111224", "DCM", "Failed"),
    QcStatus.WARN: _CC("82334004", "SCT", "Indeterminate"),
}


def algorithm_id(algorithm: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    """The model as SR algorithm identification, its intended use as the one parameter."""
    parameters = [algorithm.intended_use[:1024]] if algorithm.intended_use else None
    return hd.sr.AlgorithmIdentification(
        name=algorithm.name, version=algorithm.version, parameters=parameters
    )


def evaluations(outcome: StructureQc | None, withheld: bool) -> list[hd.sr.QualitativeEvaluation]:
    """The QC verdict of a structure as coded evaluations (none without QC)."""
    if outcome is None:
        return []
    items = [hd.sr.QualitativeEvaluation(QUALITY_ASSESSMENT, _OUTCOME[outcome.status])]
    if withheld:
        items.append(hd.sr.QualitativeEvaluation(QUALITY_ISSUE, REJECTED))
    return items


def add_reasons(group: Template, outcome: StructureQc | None, withheld: bool) -> None:
    """Append one TEXT comment per flagged check to the group's container."""
    if outcome is None:
        return
    reasons = list(outcome.reasons)
    if withheld:
        reasons.insert(0, "withheld from the SEG and RTSTRUCT by the QC policy")
    for reason in reasons:
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=COMMENT,
                value=reason[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )


@dataclass(frozen=True)
class SrQuality:
    """What the SR needs of QC, by the report's segment numbers."""

    outcomes: dict[int, StructureQc] = field(default_factory=dict)
    withheld: dict[int, hd.sr.CodedConcept] = field(default_factory=dict)  # → finding type


def sr_quality(qc: SeriesQc, crops: Sequence[RegionCrop], numbers: dict[int, int]) -> SrQuality:
    """QC keyed by segment number (``numbers``: region number → segment number)."""
    outcomes, withheld = {}, {}
    for crop in crops:
        outcome = qc.of(crop.number)
        if outcome is None:
            continue
        outcomes[numbers[crop.number]] = outcome
        if crop.number in qc.withheld_numbers:
            code = crop.code.type if crop.code is not None else None
            withheld[numbers[crop.number]] = (
                _CC(code.code, code.scheme, code.meaning)
                if code is not None
                else _CC("85756007", "SCT", "Tissue")
            )
    return SrQuality(outcomes, withheld)


def mark_intended_use(dataset: Dataset, algorithm: AlgorithmIdentity) -> None:
    """SeriesDescription ``<model> <version> RESEARCH USE ONLY`` (when the model states one)."""
    dataset.SeriesDescription = algorithm.series_description(str(dataset.SeriesDescription))


def mark_seg(
    seg: Dataset, algorithm: AlgorithmIdentity, qc: SeriesQc | None, numbers: dict[int, int]
) -> None:
    """Intended use in the SEG's descriptions; flagged segments described under ``flag``."""
    mark_intended_use(seg, algorithm)
    if algorithm.intended_use:
        seg.ContentDescription = algorithm.intended_use[:64]
    if qc is None or qc.policy is not QcPolicy.FLAG:
        return
    region = {segment: region for region, segment in numbers.items()}
    for item in seg.SegmentSequence:
        text = qc.flag_text(region.get(int(item.SegmentNumber), -1))
        if text:
            item.SegmentDescription = text[:64]


def mark_rtstruct(
    rtstruct: Dataset, algorithm: AlgorithmIdentity, qc: SeriesQc | None, numbers: dict[int, int]
) -> None:
    """Intended use and what QC withheld in the description; flagged ROIs under ``flag``."""
    mark_intended_use(rtstruct, algorithm)
    parts = [algorithm.intended_use] if algorithm.intended_use else []
    if qc is not None and qc.withheld:
        parts.append(f"withheld by QC (see the SR): {', '.join(qc.withheld)}")
    if parts:
        rtstruct.StructureSetDescription = "; ".join(parts)[:1024]
    if qc is None or qc.policy is not QcPolicy.FLAG:
        return
    region = {roi: region for region, roi in numbers.items()}
    for item in rtstruct.RTROIObservationsSequence:
        text = qc.flag_text(region.get(int(item.ReferencedROINumber), -1))
        if text:
            item.ROIObservationDescription = text[:1024]
