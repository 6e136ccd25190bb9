"""The manifest of a model bundle: everything the service needs to run a model correctly.

A manifest is validated on construction (pydantic), so a loaded bundle is usable: unknown
normalisations, a patch of the wrong rank or labels that disagree with their table fail at once
with the field named.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from service.inference.nnunet.recipe import NnunetRecipe
from service.labels.registry import LabelEntry, LabelTable
from service.qc.intended_use import IntendedUse

MANIFEST_VERSION = 1

#: Model names and versions become folder names in the model store: letters, digits, ``.``,
#: ``_`` and ``-``, starting with a letter or digit, never ``..``.
_STORE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_store_name(field: str, value: str) -> str:
    """``value`` if it is safe as one folder name of the model store.

    Raises
    ------
    ValueError
        If it has other characters, starts with ``.``/``-``/``_``, holds ``..`` or is too long.
    """
    if not _STORE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{field} {value!r} must be 1-128 letters, digits, '.', '_' or '-', start with a "
            "letter or digit and not contain '..' (it names a folder of the model store)"
        )
    return value


def label_dicts(table: LabelTable) -> list[dict[str, Any]]:
    """A label table's entries as manifest JSON (the inverse of ``LabelEntry.from_dict``)."""
    out = []
    for entry in sorted(table.labels, key=lambda e: e.number):
        data = dataclasses.asdict(entry)
        data["color"] = list(entry.color)
        data["rt_roi_interpreted_type"] = entry.rt_roi_interpreted_type.value
        if entry.qc is not None:
            data["qc"] = entry.qc.model_dump(mode="json", exclude_defaults=True)
        out.append({k: v for k, v in data.items() if v is not None})
    return out


class NormalisationKind(StrEnum):
    """How voxel values are turned into network input."""

    CT_WINDOW = "ct-window"  # clip HU to [low, high], scale to [0, 1]
    SUV = "suv"  # PET converted to SUV (type in `suv_type`), divided by (high - low), no clip
    ZSCORE = "z-score"  # (x - mean) / std over the foreground (x > min) of each volume


class Runtime(StrEnum):
    """Which recipe runs a bundle's network."""

    FEDSEG = "fedseg"  # fedseg's own U-Net recipe: spacing, normalisation, patch_size fields
    NNUNET_V2 = "nnunet-v2"  # nnU-Net v2's recipe, in the ``nnunet`` block


#: Fields of fedseg's own recipe; an nnU-Net bundle carries its recipe in ``nnunet`` instead.
_FEDSEG_RECIPE_FIELDS = (
    "spacing",
    "orientation",
    "normalisation",
    "patch_size",
    "overlap",
    "activation",
)


class Activation(StrEnum):
    """Output activation of the network's logits."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"


class Normalisation(BaseModel):
    """Intensity normalisation applied before the network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: NormalisationKind
    low: float = 0.0
    high: float = 1.0
    suv_type: str = "bw"

    @model_validator(mode="after")
    def _check_range(self) -> Normalisation:
        if self.kind is not NormalisationKind.ZSCORE and not self.high > self.low:
            raise ValueError(f"normalisation.high ({self.high}) must exceed low ({self.low})")
        return self


class Postprocessing(BaseModel):
    """Clean-up of the predicted label map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    largest_component: list[str] = Field(default_factory=list)  # labels kept as one component
    min_component_ml: float = Field(default=0.0, ge=0)  # smaller components are removed
    min_label_ml: float = Field(default=0.0, ge=0)  # a label smaller than this is absent


class SeriesRule(BaseModel):
    """Which series a model applies to (also the criteria of a routing rule; one meaning).

    Empty criteria match any series. ``modality`` is compared case-insensitively,
    ``body_part`` is a regular expression the whole BodyPartExamined must match, and
    ``series_description`` one found anywhere in SeriesDescription (both case-insensitive).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    modality: str = ""
    series_description: str | None = None
    body_part: str | None = None

    @field_validator("series_description", "body_part")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from exc
        return value

    def matches(self, modality: str, description: str, body_part: str) -> bool:
        """Whether a series with these attributes is one this rule selects."""
        if self.modality and modality.upper() != self.modality.upper():
            return False
        if self.series_description and not re.search(self.series_description, description, re.I):
            return False
        return not (self.body_part and not re.fullmatch(self.body_part, body_part.strip(), re.I))


class Provenance(BaseModel):
    """Where a model came from: sites, rounds, data, code, validation."""

    model_config = ConfigDict(frozen=True, extra="allow")

    created: str
    git_commit: str = "unknown"
    training_sites: list[str] = Field(default_factory=list)
    federated_rounds: int = 0
    data_hashes: dict[str, str] = Field(default_factory=dict)
    validation_metrics: dict[str, float] = Field(default_factory=dict)
    hardware: str = ""
    notes: str = ""


class Manifest(BaseModel):
    """Description of a model bundle (``manifest.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_version: int = MANIFEST_VERSION
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    task: str
    modality: str
    description: str = ""
    intended_use: IntendedUse  # see service.qc.intended_use for the block's schema
    labels: list[dict[str, Any]]  # the label table entries (service/labels format)
    runtime: Runtime = Runtime.FEDSEG
    spacing: tuple[float, float, float] | None = None  # required for runtime fedseg
    orientation: str = "LPS"
    normalisation: Normalisation | None = None  # required for runtime fedseg
    patch_size: tuple[int, int, int] | None = None  # required for runtime fedseg
    overlap: float = Field(default=0.5, ge=0, lt=1)
    activation: Activation = Activation.SOFTMAX
    input_channels: int = Field(default=1, ge=1)
    postprocessing: Postprocessing = Field(default_factory=Postprocessing)
    series: list[SeriesRule] = Field(default_factory=list)
    provenance: Provenance
    onnx_opset: int = Field(ge=17)
    #: nnU-Net's recipe (runtime nnunet-v2): service.inference.nnunet.recipe.NnunetRecipe
    nnunet: InstanceOf[NnunetRecipe] | None = None

    @field_validator("nnunet", mode="before")
    @classmethod
    def _nnunet_block(cls, value: Any) -> Any:
        # The recipe's own reader names the failing field's path (nnunet.models[0]...).
        return NnunetRecipe.from_dict(value) if isinstance(value, dict) else value

    @field_serializer("nnunet")
    def _nnunet_json(self, value: NnunetRecipe | None) -> dict[str, Any] | None:
        return None if value is None else value.as_dict()

    @field_validator("manifest_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != MANIFEST_VERSION:
            raise ValueError(f"manifest_version {value} is not supported (expected 1)")
        return value

    @field_validator("intended_use", mode="before")
    @classmethod
    def _intended_use_block(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "intended_use must be a block {modality, body_regions, age_years, "
                "slice_thickness_mm, training_data} (docs/service.md), not the text "
                f"{value[:40]!r}; re-export the bundle or add the block to its manifest"
            )
        return value

    @field_validator("name", "version")
    @classmethod
    def _store_safe(cls, value: str, info: ValidationInfo) -> str:
        return check_store_name(str(info.field_name), value)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if value is not None and any(v <= 0 for v in value):
            raise ValueError(f"spacing must be positive, got {value}")
        return value

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and any(v < 1 for v in value):
            raise ValueError(f"patch_size must be positive, got {value}")
        return value

    @model_validator(mode="after")
    def _check_runtime(self) -> Manifest:
        if self.runtime is Runtime.FEDSEG:
            missing = [
                k for k in ("spacing", "normalisation", "patch_size") if getattr(self, k) is None
            ]
            if missing:
                raise ValueError(f"runtime fedseg needs the field(s) {', '.join(missing)}")
            if self.nnunet is not None:
                raise ValueError('an "nnunet" block needs "runtime": "nnunet-v2"')
            return self
        if self.nnunet is None:
            raise ValueError('runtime nnunet-v2 needs the "nnunet" block (the nnU-Net recipe)')
        extra = [k for k in _FEDSEG_RECIPE_FIELDS if k in self.model_fields_set]
        if extra:
            raise ValueError(
                f"runtime nnunet-v2 carries its recipe in the nnunet block; remove the field(s) "
                f"{', '.join(extra)} of fedseg's own recipe"
            )
        if self.input_channels != len(self.nnunet.channels):
            raise ValueError(
                f"input_channels {self.input_channels} differs from the "
                f"{len(self.nnunet.channels)} channels of nnunet.channels"
            )
        numbers = {int(item.get("number", 0)) for item in self.labels}
        produced = self.nnunet.label_numbers
        if produced - numbers:
            raise ValueError(
                f"nnunet label_map produces label number(s) {sorted(produced - numbers)} that "
                "the labels list does not have"
            )
        if numbers - produced:
            raise ValueError(
                f"label number(s) {sorted(numbers - produced)} of the labels list are produced by "
                "no model's nnunet label_map"
            )
        return self

    @model_validator(mode="after")
    def _check_intended_modality(self) -> Manifest:
        if self.intended_use.modality.upper() != self.modality.upper():
            raise ValueError(
                f"intended_use.modality {self.intended_use.modality!r} differs from the "
                f"manifest's modality {self.modality!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_channel_intended_use(self) -> Manifest:
        recipe = self.nnunet.channels if self.nnunet is not None else ()
        for number, stated in self.intended_use.channels.items():
            if number >= len(recipe):
                count = max(len(recipe), 1)
                raise ValueError(
                    f"intended_use.channels.{number}: the model takes {count} input "
                    f"channel(s), numbered 0 to {count - 1} (nnunet.channels)"
                )
            modality = recipe[number].modality
            if stated.modality is not None and stated.modality.upper() != modality.upper():
                raise ValueError(
                    f"intended_use.channels.{number}.modality {stated.modality!r} differs from "
                    f"nnunet.channels[{number}] ({recipe[number].name}, modality {modality!r})"
                )
        return self

    def channel_intended_use(self, number: int) -> IntendedUse:
        """The intended use the series of input channel ``number`` is checked against."""
        recipe = self.nnunet.channels if self.nnunet is not None else ()
        modality = recipe[number].modality if number < len(recipe) else self.modality
        return self.intended_use.channel(number, modality)

    @model_validator(mode="after")
    def _check_labels(self) -> Manifest:
        table = self.label_table()  # raises on invalid entries
        numbers = sorted(e.number for e in table.labels)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"label numbers must be 1..N without gaps, got {numbers}")
        unknown = set(self.postprocessing.largest_component) - set(table.names)
        if unknown:
            raise ValueError(f"postprocessing.largest_component names unknown labels {unknown}")
        return self

    def label_table(self) -> LabelTable:
        """The manifest's labels as a validated :class:`LabelTable`."""
        return LabelTable(
            task=self.task, labels=tuple(LabelEntry.from_dict(item) for item in self.labels)
        )

    @property
    def fedseg_recipe(
        self,
    ) -> tuple[tuple[float, float, float], Normalisation, tuple[int, int, int]]:
        """Spacing, normalisation and patch size of fedseg's own recipe.

        Raises
        ------
        ValueError
            For an nnU-Net bundle, which has no such recipe.
        """
        if self.spacing is None or self.normalisation is None or self.patch_size is None:
            raise ValueError(f"{self.name} is a {self.runtime.value} bundle, not fedseg's recipe")
        return self.spacing, self.normalisation, self.patch_size

    @property
    def num_classes(self) -> int:
        """Output channels of the network: background plus one per label (softmax)."""
        n = len(self.labels)
        return n + 1 if self.activation is Activation.SOFTMAX else n
