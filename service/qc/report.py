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

from service.qc.body import BodyAnalysis
from service.qc.enum import QcPolicy, QcStatus
from service.qc.structures import QcImage, StructureMask, StructureQc, check_structures


@dataclass(frozen=True)
class SeriesQc:
    """The QC of one segmentation: every structure's outcome under one policy."""

    policy: QcPolicy
    structures: tuple[StructureQc, ...] = field(default_factory=tuple)
    intended_use: str = ""  # the model's intended-use summary, written into every output

    def of(self, name: str) -> StructureQc | None:
        """The outcome of the structure called ``name``."""
        return next((s for s in self.structures if s.name == name), None)

    @property
    def withheld(self) -> list[str]:
        """Structures kept out of SEG and RTSTRUCT: failed ones, under ``withhold``."""
        if self.policy is not QcPolicy.WITHHOLD:
            return []
        return [s.name for s in self.structures if s.status is QcStatus.FAIL]

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

    def flag_text(self, name: str) -> str:
        """``"QC FAIL: reasons"`` for a failed or warned structure, else empty."""
        outcome = self.of(name)
        if outcome is None or outcome.status is QcStatus.PASS:
            return ""
        return f"QC {outcome.status.value.upper()}: " + "; ".join(outcome.reasons)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "policy": self.policy.value,
            "counts": self.counts,
            "withheld": self.withheld,
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
