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
    ValidationInfo,
    field_validator,
    model_validator,
)

from service.labels.registry import LabelEntry, LabelTable

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
        out.append({k: v for k, v in data.items() if v is not None})
    return out


class NormalisationKind(StrEnum):
    """How voxel values are turned into network input."""

    CT_WINDOW = "ct-window"  # clip HU to [low, high], scale to [0, 1]
    SUV = "suv"  # PET converted to SUV (type in `suv_type`), divided by (high - low), no clip
    ZSCORE = "z-score"  # (x - mean) / std over the foreground (x > min) of each volume


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
    """Which series a model applies to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modality: str
    series_description: str | None = None  # regular expression, case-insensitive
    body_part: str | None = None  # regular expression on BodyPartExamined

    def matches(self, modality: str, description: str, body_part: str) -> bool:
        """Whether a series with these attributes is one this model should segment."""
        if modality.upper() != self.modality.upper():
            return False
        if self.series_description and not re.search(self.series_description, description, re.I):
            return False
        return not (self.body_part and not re.search(self.body_part, body_part, re.I))


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
    intended_use: str = "research and demonstration only; not for clinical use"
    labels: list[dict[str, Any]]  # the label table entries (service/labels format)
    spacing: tuple[float, float, float]
    orientation: str = "LPS"
    normalisation: Normalisation
    patch_size: tuple[int, int, int]
    overlap: float = Field(default=0.5, ge=0, lt=1)
    activation: Activation = Activation.SOFTMAX
    input_channels: int = Field(default=1, ge=1)
    postprocessing: Postprocessing = Field(default_factory=Postprocessing)
    series: list[SeriesRule] = Field(default_factory=list)
    provenance: Provenance
    onnx_opset: int = Field(ge=17)

    @field_validator("manifest_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != MANIFEST_VERSION:
            raise ValueError(f"manifest_version {value} is not supported (expected 1)")
        return value

    @field_validator("name", "version")
    @classmethod
    def _store_safe(cls, value: str, info: ValidationInfo) -> str:
        return check_store_name(str(info.field_name), value)

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v <= 0 for v in value):
            raise ValueError(f"spacing must be positive, got {value}")
        return value

    @field_validator("patch_size")
    @classmethod
    def _positive_patch(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(v < 1 for v in value):
            raise ValueError(f"patch_size must be positive, got {value}")
        return value

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
    def num_classes(self) -> int:
        """Output channels of the network: background plus one per label (softmax)."""
        n = len(self.labels)
        return n + 1 if self.activation is Activation.SOFTMAX else n
