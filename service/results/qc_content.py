"""The SR content of QC: one quality finding per structure, with its reasons.

Each structure's measurement group gets a qualitative evaluation "Quality Assessment"
(DCM 111050): Succeeded (DCM 111222), Failed (DCM 111224) or, for a warning, Indeterminate
(SCT 82334004), then one TEXT "Comment" (DCM 121106) per flagged check. A structure withheld
from the SEG and RTSTRUCT adds "Quality Issue" (DCM 113010) = "Rejected for Quality Reasons"
(DCM 113001), in a group of its own (TID 1501), since no SEG segment exists to reference.
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr.templates import Template

from service.qc.enum import QcStatus
from service.qc.structures import StructureQc
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
