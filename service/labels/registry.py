"""Label tables: what each label number of a task means, with its DICOM codes and colours.

The tables are data (``tables/<task>.json``); this module loads and validates them so that the
SEG, RTSTRUCT and SR writers, the readers and the models all share one meaning per label.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from service.errors import ConfigurationError

_TABLES = Path(__file__).resolve().parent / "tables"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SCT_CODE = re.compile(r"^[0-9]{5,18}$")
# AAPM TG-263 (2018), section 7: at most 16 characters, a letter first, then letters, digits and
# underscores (laterality as a suffix, e.g. "Kidney_L"); no spaces, so any planning system keeps it.
TG263_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,15}$")


class Task(StrEnum):
    """Label tables shipped with fedseg."""

    CT_ORGANS = "ct-organs"
    PET_LESION = "pet-lesion"
    MR_TUMOUR = "mr-tumour"
    BODY = "body"


class RoiInterpretedType(StrEnum):
    """RT ROI Interpreted Type (C.8.8.8), the values fedseg writes."""

    EXTERNAL = "EXTERNAL"
    PTV = "PTV"
    CTV = "CTV"
    GTV = "GTV"
    ORGAN = "ORGAN"
    AVOIDANCE = "AVOIDANCE"
    CONTROL = "CONTROL"


@dataclass(frozen=True)
class CodedTerm:
    """A coded concept (SNOMED CT unless said otherwise)."""

    code: str
    meaning: str
    scheme: str = "SCT"

    def __post_init__(self) -> None:
        if not self.meaning:
            raise ValueError(f"code {self.code} has no meaning")
        if self.scheme == "SCT" and not _SCT_CODE.match(self.code):
            raise ValueError(f"{self.code!r} is not a SNOMED CT concept id")


@dataclass(frozen=True)
class LabelEntry:
    """One label of a task: number, canonical name, codes, colour and RT ROI type."""

    number: int
    name: str
    display_name: str
    category: CodedTerm
    type: CodedTerm
    color: tuple[int, int, int]
    rt_roi_interpreted_type: RoiInterpretedType
    laterality: CodedTerm | None = None
    tg263_name: str | None = None

    def __post_init__(self) -> None:
        if self.tg263_name is not None and not TG263_NAME.match(self.tg263_name):
            raise ValueError(
                f"label {self.name!r}: tg263_name {self.tg263_name!r} is not a TG-263 name "
                "(a letter, then up to 15 letters, digits or underscores)"
            )
        if not 1 <= self.number <= 65535:
            raise ValueError(f"label {self.name!r}: number {self.number} is outside 1..65535")
        if not _NAME.match(self.name):
            raise ValueError(f"label name {self.name!r} must be lower-case snake_case")
        if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
            raise ValueError(f"label {self.name!r}: colour {self.color} is not 8-bit RGB")

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabelEntry:
        """Build an entry from one item of a JSON table."""

        def term(key: str) -> CodedTerm | None:
            raw = data.get(key)
            if raw is None:
                return None
            if not isinstance(raw, dict):
                raise ValueError(f"{key} must be an object with code and meaning")
            return CodedTerm(str(raw["code"]), str(raw["meaning"]), str(raw.get("scheme", "SCT")))

        category, type_ = term("category"), term("type")
        if category is None or type_ is None:
            raise ValueError(f"label {data.get('name')!r} needs a category and a type code")
        color = data["color"]
        if not isinstance(color, list):
            raise ValueError(f"label {data.get('name')!r}: color must be [r, g, b]")
        return cls(
            number=int(data["number"]),  # type: ignore[call-overload]
            name=str(data["name"]),
            display_name=str(data.get("display_name", data["name"])),
            category=category,
            type=type_,
            color=(int(color[0]), int(color[1]), int(color[2])),
            rt_roi_interpreted_type=RoiInterpretedType(str(data["rt_roi_interpreted_type"])),
            laterality=term("laterality"),
            tg263_name=str(data["tg263_name"]) if data.get("tg263_name") is not None else None,
        )


@dataclass(frozen=True)
class LabelTable:
    """The labels of one task, with unique numbers and names."""

    task: str
    labels: tuple[LabelEntry, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError(f"label table {self.task!r} is empty")
        numbers = [e.number for e in self.labels]
        names = [e.name for e in self.labels]
        if len(set(numbers)) != len(numbers) or len(set(names)) != len(names):
            raise ValueError(f"label table {self.task!r} repeats a label number or name")

    @property
    def names(self) -> list[str]:
        """Label names in number order."""
        return [e.name for e in sorted(self.labels, key=lambda e: e.number)]

    def by_name(self, name: str) -> LabelEntry:
        """The entry called ``name``; raises ``KeyError`` naming the known labels."""
        for entry in self.labels:
            if entry.name == name:
                return entry
        raise KeyError(f"{name!r} is not a label of {self.task} (known: {', '.join(self.names)})")

    def by_number(self, number: int) -> LabelEntry:
        """The entry with label value ``number``."""
        for entry in self.labels:
            if entry.number == number:
                return entry
        raise KeyError(f"label {number} is not in table {self.task}")

    def find(self, name: str) -> LabelEntry | None:
        """The entry named, displayed or TG-263-named ``name`` (case-insensitive), or None.

        Spaces and hyphens count as underscores in names, so "Left kidney" (display name),
        "Kidney_L" (TG-263) and "kidney-left" all find ``kidney_left``.
        """
        key = name.strip().lower().replace(" ", "_").replace("-", "_")
        shown = name.strip().lower()
        return next(
            (
                e
                for e in self.labels
                if e.name == key
                or e.display_name.lower() == shown
                or (e.tg263_name or "").lower() == shown
            ),
            None,
        )


def presentation(entry: LabelEntry, task: str | None) -> LabelEntry:
    """``entry`` as the shipped table of ``task`` has it (TG-263 name, colour), else as given.

    Model manifests carry copies of their label table; the shipped tables are where TG-263
    names and display colours are maintained, so result objects show a label as they have it.
    """
    if task is None or task not in {t.value for t in Task}:
        return entry
    try:
        shipped = get_table(task).by_name(entry.name)
    except KeyError:
        return entry
    return shipped if shipped.type == entry.type else entry


def load_table(path: Path) -> LabelTable:
    """Read and validate a label table from JSON.

    Raises
    ------
    ConfigurationError
        If the file is missing, not JSON, or an entry is invalid; the message names the file.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = tuple(LabelEntry.from_dict(item) for item in data["labels"])
        return LabelTable(task=str(data["task"]), labels=labels)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"label table {path} does not exist") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"label table {path} is invalid: {exc}") from exc


def get_table(task: Task | str) -> LabelTable:
    """The shipped label table of ``task`` (``ct-organs``, ``pet-lesion``, ``mr-tumour``, ``body``).

    Raises
    ------
    ConfigurationError
        If ``task`` is not a known task.
    """
    try:
        task = Task(task)
    except ValueError as exc:
        known = ", ".join(t.value for t in Task)
        raise ConfigurationError(f"unknown task {task!r}; known tasks: {known}") from exc
    return load_table(_TABLES / f"{task.value}.json")
