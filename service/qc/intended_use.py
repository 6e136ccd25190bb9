"""The manifest's ``intended_use`` block: what a model was made for and trained on.

The block is self-contained (it imports nothing else from fedseg but the QC vocabulary), so
every producer of manifests fills the same schema: ``fedseg export``, the federation's
promotion, and the nnU-Net importer (from its options). Example::

    "intended_use": {
      "statement": "research use only; not for clinical use",
      "research_only": true,
      "modality": "CT",
      "body_regions": ["thorax", "abdomen"],
      "age_years": {"min": 18, "max": 100},
      "slice_thickness_mm": {"min": 0.5, "max": 6.0},
      "training_data": {"kind": "synthetic", "cases": 10, "sources": ["fedseg phantoms"]},
      "checks": ["modality", "body_part_header", "body_present", "body_regions_image",
                 "age", "slice_thickness"]
    }

``body_regions`` are the regions the model expects in the field of view: a series is inside
the intended use when it shows at least one of them. ``checks`` lists the applicability checks
that run (default: all); leave one out when the image cannot support it, e.g. ``age`` for
anonymised archives. Unknown regions or check names, and a range whose ``min`` exceeds its
``max``, are refused when the manifest is loaded, with the field named.

The block describes channel 0, the series the output lies on. A multi-channel model (an nnU-Net
PET/CT model) states what the series of each further channel must be under ``channels``, keyed
by channel number; a channel left out is checked for its modality alone::

    "channels": {"1": {"modality": "CT", "slice_thickness_mm": {"max": 5.0},
                       "checks": ["modality", "slice_thickness", "body_part_header"]}}

A channel's ``modality`` defaults to the one its recipe names, ``body_regions`` to the block's,
and its checks are those the header can answer (its image is not analysed); ``age`` is the
patient's, checked once on channel 0.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from service.errors import ModelBundleError
from service.qc.enum import ApplicabilityCheck, BodyRegion

RESEARCH_USE_ONLY = "RESEARCH USE ONLY"


class Range(BaseModel):
    """A closed interval; a missing bound is open."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) exceeds max ({self.max:g})")
        return self

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the interval."""
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self, unit: str = "") -> str:
        """``"18 to 100 y"``, ``">= 0.5 mm"``, ``"any"`` (ASCII: DICOM text is ISO 646)."""
        suffix = f" {unit}" if unit else ""
        if self.min is not None and self.max is not None:
            return f"{self.min:g} to {self.max:g}{suffix}"
        if self.min is not None:
            return f">= {self.min:g}{suffix}"
        if self.max is not None:
            return f"<= {self.max:g}{suffix}"
        return "any"


class TrainingDataKind(StrEnum):
    """Whether a model saw real patients, synthetic images or both."""

    SYNTHETIC = "synthetic"
    REAL = "real"
    MIXED = "mixed"
    UNSTATED = "unstated"  # the producer did not say (shown as such in every output)


class TrainingData(BaseModel):
    """What the model was trained on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TrainingDataKind
    cases: int | None = Field(default=None, ge=0)  # None: not stated by the producer
    sources: list[str] = Field(min_length=1)  # data sets, sites or generators, in words

    def describe(self) -> str:
        """``"10 synthetic cases (fedseg phantoms)"``."""
        if self.kind is TrainingDataKind.UNSTATED:
            return f"data not stated ({'; '.join(self.sources)})"
        count = f"{self.cases} " if self.cases is not None else ""
        return f"{count}{self.kind.value} cases ({'; '.join(self.sources)})"


#: The checks a further channel's series can get: what its header says.
CHANNEL_CHECKS = (
    ApplicabilityCheck.MODALITY,
    ApplicabilityCheck.SLICE_THICKNESS,
    ApplicabilityCheck.BODY_PART_HEADER,
    # Judged on the channel's own image once it is read (service.segment.secondary_values).
    ApplicabilityCheck.BODY_PRESENT,
    ApplicabilityCheck.BODY_REGIONS_IMAGE,
)


class ChannelUse(BaseModel):
    """What the series of one further input channel (1, 2, …) must be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modality: str | None = Field(default=None, min_length=1)  # None: the recipe's
    body_regions: list[BodyRegion] | None = Field(default=None, min_length=1)  # None: channel 0's
    slice_thickness_mm: Range = Field(default_factory=Range)
    checks: list[ApplicabilityCheck] = Field(default_factory=lambda: list(CHANNEL_CHECKS))

    @model_validator(mode="after")
    def _header_checks(self) -> ChannelUse:
        other = [c.value for c in self.checks if c not in CHANNEL_CHECKS]
        if other:
            raise ValueError(
                f"checks {other} cannot run on a further channel's series, which answers "
                f"{', '.join(c.value for c in CHANNEL_CHECKS)} (the patient's age is judged on "
                "channel 0)"
            )
        return self


class IntendedUse(BaseModel):
    """What a model is for; checked against every series before inference."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    statement: str = Field(default="research use only; not for clinical use", min_length=1)
    research_only: bool = True
    modality: str = Field(min_length=1)
    body_regions: list[BodyRegion] = Field(min_length=1)
    age_years: Range = Field(default_factory=Range)
    slice_thickness_mm: Range = Field(default_factory=Range)
    training_data: TrainingData
    checks: list[ApplicabilityCheck] = Field(default_factory=lambda: list(ApplicabilityCheck))
    #: Further channels of a multi-channel model, by channel number (1, 2, …).
    channels: dict[int, ChannelUse] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _further_channels(cls, value: dict[int, ChannelUse]) -> dict[int, ChannelUse]:
        if any(number < 1 for number in value):
            raise ValueError(
                f"channel numbers {sorted(value)}: channel 0 is the block itself; list "
                "channels 1, 2, …"
            )
        return value

    def channel(self, number: int, modality: str) -> IntendedUse:
        """The intended use the series of channel ``number`` (modality per its recipe) meets.

        Channel 0 is this block. A further channel gets its ``channels`` entry (its modality
        defaulting to ``modality``, its regions to this block's), or the ``modality`` check
        alone when it has none; never ``age``, which channel 0 answers for the patient.
        """
        if number == 0:
            return self
        stated = self.channels.get(number) or ChannelUse(checks=[ApplicabilityCheck.MODALITY])
        return self.model_copy(
            update={
                "modality": stated.modality or modality,
                "body_regions": stated.body_regions or self.body_regions,
                "age_years": Range(),
                "slice_thickness_mm": stated.slice_thickness_mm,
                "checks": list(stated.checks),
                "channels": {},
            }
        )

    def runs(self, check: ApplicabilityCheck) -> bool:
        """Whether ``check`` is one this manifest asks for."""
        return check in self.checks

    def label(self, name: str, version: str) -> str:
        """Model, version and, while research only, ``RESEARCH USE ONLY`` (one DICOM LO)."""
        text = f"{name} {version}" + (f" {RESEARCH_USE_ONLY}" if self.research_only else "")
        return text[:64]

    def summary(self) -> str:
        """One line for the CLI, the RTSTRUCT and the SR."""
        regions = ", ".join(r.value.replace("_", " ") for r in self.body_regions)
        parts = [
            RESEARCH_USE_ONLY if self.research_only else self.statement,
            f"{self.modality} of {regions}",
            f"age {self.age_years.describe('y')}",
            f"slices {self.slice_thickness_mm.describe('mm')}",
            f"trained on {self.training_data.describe()}",
        ]
        return "; ".join(parts)


def read_intended_use(path: Path) -> IntendedUse:
    """Read an intended-use block from a JSON file (``--intended-use`` of export and import).

    Raises
    ------
    ModelBundleError
        If the file cannot be read or is not a valid intended-use block; names the file.
    """
    try:
        return IntendedUse.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise ModelBundleError(f"--intended-use {path}: {exc}") from exc
