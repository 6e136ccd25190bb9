"""Anatomy priors of one label: the ``qc`` block of a label-table entry.

Each numeric prior has two ranges: ``expected`` (the published reference range; outside it a
structure gets ``warn``) and ``possible`` (the limits disease still reaches; outside them it
gets ``fail``). Every prior cites where its numbers come from. Example (``ct-organs``)::

    "qc": {
      "trunk": true,
      "side": "right",
      "volume_ml": [
        {"age_years": {"min": 18}, "expected": {"min": 800, "max": 2600},
         "possible": {"min": 400, "max": 6000}}
      ],
      "intensity": {"CT": {"expected": {"min": 20, "max": 160},
                           "possible": {"min": -40, "max": 250}}},
      "relations": [{"relation": "below", "of": "lung_right"}],
      "max_components": 1,
      "references": ["ICRP Publication 89 (2002), table 2.8: ..."]
    }

Intensity is the structure's mean: HU for CT, SUV for PET, and for MR the ratio to the median
signal of the body (MR has no absolute scale). Unknown keys, modalities, relations or check
names, and a range whose ``min`` exceeds its ``max``, are refused at load with the field named.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from service.qc.enum import BodyRegion, Relation, Side, StructureCheck
from service.qc.intended_use import Range

INTENSITY_UNITS = {"CT": "HU", "PT": "SUV", "MR": "x body median"}


class Bounds(BaseModel):
    """A reference range inside wider limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expected: Range = Field(default_factory=Range)  # outside: warn
    possible: Range = Field(default_factory=Range)  # outside: fail

    @model_validator(mode="after")
    def _nested(self) -> Bounds:
        low_e, high_e = self.expected.min, self.expected.max
        low_p, high_p = self.possible.min, self.possible.max
        if low_e is not None and low_p is not None and low_p > low_e:
            raise ValueError(f"possible.min ({low_p:g}) exceeds expected.min ({low_e:g})")
        if high_e is not None and high_p is not None and high_p < high_e:
            raise ValueError(f"possible.max ({high_p:g}) is below expected.max ({high_e:g})")
        return self


class AgeBand(Bounds):
    """Volume bounds for the ages in ``age_years``."""

    age_years: Range = Field(default_factory=Range)


class RelationPrior(BaseModel):
    """Where a structure lies relative to another label (or to bone, for the skeleton)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    relation: Relation
    of: str | None = None  # another label's name; none for ``posterior_to_bone``

    @model_validator(mode="after")
    def _target(self) -> RelationPrior:
        needs = self.relation in (Relation.ABOVE, Relation.BELOW)
        if needs and not self.of:
            raise ValueError(f"relation {self.relation.value!r} needs 'of' (a label name)")
        if not needs and self.of:
            raise ValueError(f"relation {self.relation.value!r} takes no 'of'")
        return self


class StructurePrior(BaseModel):
    """What a plausible segmentation of one label looks like."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: BodyRegion | None = None  # where it lives (documentation, and the trunk test)
    trunk: bool = False  # lies in the trunk, never in a limb
    side: Side | None = None  # default: from the label's laterality code
    volume_ml: list[AgeBand] = Field(default_factory=list)
    intensity: dict[str, Bounds] = Field(default_factory=dict)  # by modality
    relations: list[RelationPrior] = Field(default_factory=list)
    max_components: int | None = Field(default=None, ge=1)
    extends_beyond_fov: bool = False  # e.g. the spinal cord: always cut by the FOV
    checks: list[StructureCheck] = Field(default_factory=lambda: list(StructureCheck))
    references: list[str] = Field(default_factory=list)

    @field_validator("intensity")
    @classmethod
    def _modalities(cls, value: dict[str, Bounds]) -> dict[str, Bounds]:
        unknown = sorted(set(value) - set(INTENSITY_UNITS))
        if unknown:
            raise ValueError(
                f"unknown modality {', '.join(unknown)}; use {', '.join(INTENSITY_UNITS)}"
            )
        return value

    @model_validator(mode="after")
    def _cited(self) -> StructurePrior:
        if (self.volume_ml or self.intensity) and not self.references:
            raise ValueError("volume and intensity priors need their references")
        return self

    def volume_for(self, age_years: float | None) -> tuple[Bounds, str] | None:
        """The volume bounds for ``age_years`` and which band they are; None without a band.

        With the age unknown, the bands are merged (the smallest lower and the largest upper
        bounds), so no patient is judged against another age's norm.
        """
        if not self.volume_ml:
            return None
        if age_years is not None:
            for band in self.volume_ml:
                if band.age_years.contains(age_years):
                    return band, f"age {band.age_years.describe('y')}"
            return None
        return _merged(self.volume_ml), "age unknown: every age band"


def _merged(bands: list[AgeBand]) -> Bounds:
    def low(ranges: list[Range]) -> float | None:
        values = [r.min for r in ranges]
        return None if any(v is None for v in values) else min(v for v in values if v is not None)

    def high(ranges: list[Range]) -> float | None:
        values = [r.max for r in ranges]
        return None if any(v is None for v in values) else max(v for v in values if v is not None)

    expected = [b.expected for b in bands]
    possible = [b.possible for b in bands]
    return Bounds(
        expected=Range(min=low(expected), max=high(expected)),
        possible=Range(min=low(possible), max=high(possible)),
    )


def parse_prior(data: object, label: str) -> StructurePrior:
    """Validate one ``qc`` block; the error names the label and the field.

    Raises
    ------
    ValueError
        If the block is invalid.
    """
    try:
        return StructurePrior.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"label {label!r}: {field_errors(exc, 'qc')}") from None


def field_errors(exc: ValidationError, prefix: str) -> str:
    """Pydantic errors as ``prefix.field.path: message`` joined by ``; ``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in (prefix, *error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
