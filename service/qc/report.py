"""A segmentation's QC outcome, and what the delivery policy keeps out of sent results.

``withhold`` (the default) keeps failed structures out of every object sent to a PACS or a
planning system (SEG, RTSTRUCT); the SR lists them with the reasons, and the local results
(``measurements.json``, the dashboard) keep everything, flagged. ``flag`` sends everything and
marks failed structures in their descriptions; ``off`` runs no structure QC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.dicom.volume import Volume
from service.errors import SuvError
from service.pet.suv import to_suv
from service.qc.applicability import patient_age_years
from service.qc.body import BodyAnalysis, analyse_body
from service.qc.enum import QcPolicy, QcStatus
from service.qc.structures import QcImage, StructureMask, StructureQc, check_structures


@dataclass(frozen=True)
class SeriesQc:
    """The QC of one segmentation: every structure's outcome under one policy."""

    policy: QcPolicy
    structures: tuple[StructureQc, ...] = field(default_factory=tuple)
    intended_use: str = ""  # the model's intended-use summary, written into every output

    def of(self, number: int) -> StructureQc | None:
        """The outcome of the structure (region) with number ``number``."""
        return next((s for s in self.structures if s.number == number), None)

    @property
    def withheld_numbers(self) -> set[int]:
        """Region numbers kept out of SEG and RTSTRUCT: failed ones, under ``withhold``."""
        if self.policy is not QcPolicy.WITHHOLD:
            return set()
        return {s.number for s in self.structures if s.status is QcStatus.FAIL}

    @property
    def withheld(self) -> list[str]:
        """Names of the withheld structures."""
        return [s.name for s in self.structures if s.number in self.withheld_numbers]

    @property
    def counts(self) -> dict[str, int]:
        """How many structures passed, warned and failed."""
        counts = {status.value: 0 for status in (QcStatus.PASS, QcStatus.WARN, QcStatus.FAIL)}
        for structure in self.structures:
            counts[structure.status.value] += 1
        return counts

    @property
    def flagged(self) -> bool:
        """Whether any structure warned or failed."""
        return any(s.status is not QcStatus.PASS for s in self.structures)

    def flag_text(self, number: int) -> str:
        """``"QC FAIL: reasons"`` for a failed or warned structure, else empty."""
        outcome = self.of(number)
        if outcome is None or outcome.status is QcStatus.PASS:
            return ""
        return f"QC {outcome.status.value.upper()}: " + "; ".join(outcome.reasons)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "policy": self.policy.value,
            "counts": self.counts,
            "withheld": self.withheld,
            # Numbers identify a structure where names repeat (lesions sharing one label).
            "withheld_numbers": sorted(self.withheld_numbers),
            "structures": [s.as_dict() for s in self.structures],
        }


def run_qc(
    structures: Sequence[StructureMask],
    values: np.ndarray,
    affine: np.ndarray,
    modality: str,
    body: BodyAnalysis | None,
    age_years: float | None,
    policy: QcPolicy,
    intended_use: str = "",
) -> SeriesQc:
    """Check every structure under ``policy`` (``off``: none)."""
    if policy is QcPolicy.OFF:
        return SeriesQc(policy, (), intended_use)
    image = QcImage(values, affine, modality, body, age_years)
    return SeriesQc(policy, tuple(check_structures(structures, image)), intended_use)


def check_volume(
    volume: Volume,
    structures: Sequence[StructureMask],
    policy: QcPolicy,
    intended_use: str = "",
) -> SeriesQc:
    """QC of structures given on ``volume`` (a reference mask: ``fedseg convert``/``measure``).

    PET is judged in SUVbw; a PET series that cannot be converted is judged without its body
    and intensity (both need SUV).
    """
    values: np.ndarray = volume.array
    body_values: np.ndarray | None = values
    if volume.modality == "PT":
        try:
            values, _ = to_suv(volume)
        except SuvError:
            body_values = None
        else:
            body_values = values
    body = (
        analyse_body(body_values, volume.affine, volume.modality)
        if body_values is not None
        else None
    )
    age = patient_age_years(volume.header)
    return run_qc(
        structures, values, volume.affine, volume.modality, body, age, policy, intended_use
    )


def qc_lines(qc: dict[str, object]) -> list[str]:
    """One line per structure of a :meth:`SeriesQc.as_dict`: ``QC FAIL liver: reasons``."""
    withheld = set(qc.get("withheld_numbers", []))  # type: ignore[call-overload]
    lines = []
    for structure in qc.get("structures", []):  # type: ignore[attr-defined]
        reasons = "; ".join(structure["reasons"])
        mark = " (withheld from SEG/RTSTRUCT)" if structure["number"] in withheld else ""
        status = str(structure["status"]).upper()
        lines.append(
            f"QC {status:<4} {structure['name']}{mark}" + (f": {reasons}" if reasons else "")
        )
    return lines
