"""Is a series inside a model's intended use? Checked from the header, then from the image.

The header checks (modality, age, slice thickness) run before any pixel is decoded. The body
part is judged once the image is read: ``BodyPartExamined`` counts when it is a known value
(DICOM PS3.16 CID 4031) and the image does not contradict it, and the image itself must show
a body and, where the modality allows, one of the expected regions (lungs: the thorax; a
trunk-wide cross-section below them: the abdomen). No patient value is ever logged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from pydicom.dataset import Dataset

from service.qc.body import BodyAnalysis
from service.qc.enum import ApplicabilityCheck, BodyRegion, QcStatus
from service.qc.intended_use import IntendedUse

_R = BodyRegion
#: BodyPartExamined defined terms (CID 4031 and common vendor values) → regions.
BODY_PARTS: dict[str, frozenset[BodyRegion]] = {
    key: frozenset(value)
    for key, value in {
        "HEAD": {_R.HEAD},
        "BRAIN": {_R.HEAD},
        "SKULL": {_R.HEAD},
        "HEADNECK": {_R.HEAD, _R.NECK},
        "NECK": {_R.NECK},
        "CSPINE": {_R.NECK},
        "CHEST": {_R.THORAX},
        "THORAX": {_R.THORAX},
        "LUNG": {_R.THORAX},
        "HEART": {_R.THORAX},
        "BREAST": {_R.THORAX},
        "TSPINE": {_R.THORAX},
        "CHESTABDOMEN": {_R.THORAX, _R.ABDOMEN},
        "CHESTABDPELVIS": {_R.THORAX, _R.ABDOMEN, _R.PELVIS},
        "ABDOMEN": {_R.ABDOMEN},
        "LIVER": {_R.ABDOMEN},
        "KIDNEY": {_R.ABDOMEN},
        "PANCREAS": {_R.ABDOMEN},
        "LSPINE": {_R.ABDOMEN},
        "ABDOMENPELVIS": {_R.ABDOMEN, _R.PELVIS},
        "ABDPELVIS": {_R.ABDOMEN, _R.PELVIS},
        "PELVIS": {_R.PELVIS},
        "PROSTATE": {_R.PELVIS},
        "BLADDER": {_R.PELVIS},
        "EXTREMITY": {_R.UPPER_LIMB, _R.LOWER_LIMB},
        "ARM": {_R.UPPER_LIMB},
        "SHOULDER": {_R.UPPER_LIMB},
        "ELBOW": {_R.UPPER_LIMB},
        "HAND": {_R.UPPER_LIMB},
        "LEG": {_R.LOWER_LIMB},
        "HIP": {_R.LOWER_LIMB, _R.PELVIS},
        "THIGH": {_R.LOWER_LIMB},
        "KNEE": {_R.LOWER_LIMB},
        "FOOT": {_R.LOWER_LIMB},
        "WHOLEBODY": set(BodyRegion),
    }.items()
}
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True)
class Finding:
    """One applicability check: what the series showed against what the model expects."""

    check: ApplicabilityCheck
    status: QcStatus
    value: str
    expected: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """Plain data for JSON."""
        return {
            "check": self.check.value,
            "status": self.status.value,
            "value": self.value,
            "expected": self.expected,
            "message": self.message,
        }


@dataclass(frozen=True)
class Applicability:
    """The verdict on one series for one model."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)
    forced: bool = False

    @property
    def inside(self) -> bool:
        """Whether no check failed."""
        return not any(f.status is QcStatus.FAIL for f in self.findings)

    @property
    def runs(self) -> bool:
        """Whether the model runs: inside its intended use, or forced by the request."""
        return self.inside or self.forced

    @property
    def reasons(self) -> list[str]:
        """The messages of the failed checks."""
        return [f.message for f in self.findings if f.status is QcStatus.FAIL]

    def extended(self, findings: Sequence[Finding]) -> Applicability:
        """The verdict with ``findings`` added."""
        return Applicability((*self.findings, *findings), self.forced)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "inside_intended_use": self.inside,
            "forced": self.forced,
            "reasons": self.reasons,
            "findings": [f.as_dict() for f in self.findings],
        }


def patient_age_years(header: Dataset) -> float | None:
    """Age at the study from PatientAge, else from birth and study dates; None when unknown."""
    match = _AGE.match(str(header.get("PatientAge", "") or "").strip().upper())
    if match:
        return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)]
    born, studied = _date(header.get("PatientBirthDate")), _date(header.get("StudyDate"))
    if born is None or studied is None or studied < born:
        return None
    return (studied - born).days / 365.25


def _date(value: object) -> date | None:
    text = str(value or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _slice_thickness(header: Dataset, step_mm: float) -> float:
    try:
        value = float(header.get("SliceThickness") or 0.0)
    except (TypeError, ValueError):
        value = 0.0
    return value if value > 0 else step_mm


def check_header(
    header: Dataset, modality: str, step_mm: float, intended: IntendedUse
) -> list[Finding]:
    """Modality, age and slice thickness: what can be judged before the pixels are read."""
    findings = []
    if intended.runs(ApplicabilityCheck.MODALITY):
        ok = modality.upper() == intended.modality.upper()
        findings.append(
            Finding(
                ApplicabilityCheck.MODALITY,
                QcStatus.PASS if ok else QcStatus.FAIL,
                modality,
                intended.modality,
                f"modality {modality}" + ("" if ok else f", the model is for {intended.modality}"),
            )
        )
    if intended.runs(ApplicabilityCheck.AGE):
        findings.append(_age_finding(patient_age_years(header), intended))
    if intended.runs(ApplicabilityCheck.SLICE_THICKNESS):
        thickness = _slice_thickness(header, step_mm)
        ok = intended.slice_thickness_mm.contains(thickness)
        expected = intended.slice_thickness_mm.describe("mm")
        findings.append(
            Finding(
                ApplicabilityCheck.SLICE_THICKNESS,
                QcStatus.PASS if ok else QcStatus.FAIL,
                f"{thickness:.3g} mm",
                expected,
                f"slice thickness {thickness:.3g} mm"
                + ("" if ok else f" is outside the model's {expected}"),
            )
        )
    return findings


def check_channel_header(
    header: Dataset, modality: str, step_mm: float, intended: IntendedUse, channel: str
) -> list[Finding]:
    """A further channel's series (``intended``: :meth:`IntendedUse.channel`), from its header.

    The checks of :func:`check_header` and the BodyPartExamined half of :func:`check_image`
    (its image is not analysed); every message starts with ``channel``, which names the
    channel and the series.
    """
    findings = [
        *check_header(header, modality, step_mm, intended),
        *check_image(header, None, intended),
    ]
    return [replace(f, message=f"{channel}: {f.message}") for f in findings]


def check_channel_image(
    header: Dataset, body: BodyAnalysis | None, intended: IntendedUse, channel: str
) -> list[Finding]:
    """A further channel's image, once read: the image half of :func:`check_image`.

    BodyPartExamined was judged from the header at selection (:func:`check_channel_header`);
    here the image shows whether a body is there and which regions (a header the image
    contradicts no longer overrules it). Every message starts with ``channel``.
    """
    findings = [
        f
        for f in check_image(header, body, intended)
        if f.check is not ApplicabilityCheck.BODY_PART_HEADER
    ]
    return [replace(f, message=f"{channel}: {f.message}") for f in findings]


def _age_finding(age: float | None, intended: IntendedUse) -> Finding:
    expected = intended.age_years.describe("y")
    if age is None:
        return Finding(
            ApplicabilityCheck.AGE, QcStatus.NOT_ASSESSED, "unknown", expected, "age unknown"
        )
    ok = intended.age_years.contains(age)
    # The age itself stays out of the message: outputs may travel without the patient's header.
    message = "age inside the model's range" if ok else f"age outside the model's {expected}"
    return Finding(
        ApplicabilityCheck.AGE, QcStatus.PASS if ok else QcStatus.FAIL, "", expected, message
    )


def check_image(header: Dataset, body: BodyAnalysis | None, intended: IntendedUse) -> list[Finding]:
    """Body part from the header (when trustworthy) and from the image."""
    findings = []
    expected = frozenset(intended.body_regions)
    wanted = ", ".join(sorted(r.value for r in expected))
    if intended.runs(ApplicabilityCheck.BODY_PRESENT) and body is not None:
        findings.append(
            Finding(
                ApplicabilityCheck.BODY_PRESENT,
                QcStatus.PASS if body.has_body else QcStatus.FAIL,
                f"{body.body_ml:.0f} mL",
                "a body",
                "a body is in the image" if body.has_body else "the image shows no body",
            )
        )
    header_finding = _header_regions(header, body, expected, wanted)
    image_finding = _image_regions(body, expected, wanted)
    if header_finding is not None and intended.runs(ApplicabilityCheck.BODY_PART_HEADER):
        findings.append(header_finding)
    if image_finding is not None and intended.runs(ApplicabilityCheck.BODY_REGIONS_IMAGE):
        trusted = header_finding is not None and header_finding.status is QcStatus.PASS
        if image_finding.status is QcStatus.FAIL and trusted:  # a trustworthy header overrules
            image_finding = Finding(
                image_finding.check,
                QcStatus.WARN,
                image_finding.value,
                image_finding.expected,
                image_finding.message + "; BodyPartExamined names one, so the model runs",
            )
        findings.append(image_finding)
    return findings


def _header_regions(
    header: Dataset, body: BodyAnalysis | None, expected: frozenset[BodyRegion], wanted: str
) -> Finding | None:
    """The BodyPartExamined verdict, or None when the header is absent or untrustworthy."""
    raw = str(header.get("BodyPartExamined", "") or "").strip().upper()
    regions = BODY_PARTS.get(re.sub(r"[^A-Z]", "", raw))
    if not regions:
        return None  # absent, or a value no standard defines (e.g. PARTIALBODY)
    if body is not None and (body.regions_seen - regions):
        return None  # the image shows a region the header leaves out: the header is wrong
    ok = bool(regions & expected)
    message = f"BodyPartExamined {raw}" + ("" if ok else f" is none of the model's {wanted}")
    status = QcStatus.PASS if ok else QcStatus.FAIL
    return Finding(ApplicabilityCheck.BODY_PART_HEADER, status, raw, wanted, message)


def _image_regions(
    body: BodyAnalysis | None, expected: frozenset[BodyRegion], wanted: str
) -> Finding | None:
    """Whether the image shows an expected region, or None where it cannot tell."""
    if body is None or not (expected & body.regions_assessed):
        return None
    seen = ", ".join(sorted(r.value for r in body.regions_seen)) or "neither thorax nor abdomen"
    if expected & body.regions_seen:
        message = f"the image shows {seen}"
        return Finding(ApplicabilityCheck.BODY_REGIONS_IMAGE, QcStatus.PASS, seen, wanted, message)
    if expected - body.regions_assessed:
        return None  # an expected region the image cannot show may be what it holds
    message = (
        f"the image shows {seen} (lung parenchyma {body.lungs_ml:.0f} mL), "
        f"none of the model's {wanted}"
    )
    return Finding(ApplicabilityCheck.BODY_REGIONS_IMAGE, QcStatus.FAIL, seen, wanted, message)
