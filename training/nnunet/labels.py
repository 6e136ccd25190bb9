"""Names and codes for an nnU-Net model's labels, and the bundle's label numbers.

nnU-Net's dataset.json names labels in free text ("liver", "kidney_left", "Lung_L"). A bundle
needs each label coded (SNOMED CT category and type, colour, RT ROI type), so names are looked
up in this order:

1. the centre's label table (``--labels TABLE``, service/labels format), by name, display name
   or TG-263 name;
2. fedseg's shipped label tables (service/labels/tables), the same way;
3. the TG-263 reading of the name (service/labels/roi_synonyms.json: "Lung_L", "left lung"),
   matched to a shipped entry's ``tg263_name``;
4. otherwise a generic code (SCT 91723000 "Anatomical structure") with the name as display
   name, and a warning: the SEG and RTSTRUCT then carry the name but no specific concept.

Bundle label numbers are 1..N in the order the labels first appear across the imported models;
a name that two models share is one bundle label (later models overwrite earlier ones where
both are non-zero, as TotalSegmentator merges its parts).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.labels.registry import (
    CodedTerm,
    LabelEntry,
    LabelTable,
    RoiInterpretedType,
    Task,
    get_table,
)
from service.labels.roi_names import SynonymTable

logger = logging.getLogger(__name__)

GENERIC_CATEGORY = CodedTerm("123037004", "Anatomical Structure")
GENERIC_TYPE = CodedTerm("91723000", "Anatomical structure")
#: Distinct colours for labels without a table entry (cycled).
_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
)


def model_outputs(dataset: dict[str, Any]) -> list[tuple[int, str]]:
    """``(nnU-Net label value, name)`` of every value the model writes, in dataset.json order.

    Softmax models write each label's value; region models write ``regions_class_order[i]``
    for the i-th region (dataset.json order, background and ignore left out).
    """
    labels: dict[str, Any] = dataset["labels"]
    order = dataset.get("regions_class_order")
    named = [(n, v) for n, v in labels.items() if n not in ("background", "ignore")]
    if order is None:
        return [(int(v), n) for n, v in named if isinstance(v, int) and v != 0]
    return [(int(value), name) for (name, _), value in zip(named, order, strict=False)]


def snake_name(name: str) -> str:
    """``name`` as a label name: lower-case snake_case starting with a letter."""
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    text = "_".join(words) or "label"
    return text if text[0].isalpha() else f"label_{text}"


@dataclass
class LabelCoder:
    """Finds the coded entry for a label name (see the module docstring for the order)."""

    table: LabelTable | None = None
    synonyms: SynonymTable = field(default_factory=SynonymTable.load)
    shipped: Sequence[LabelTable] = field(
        default_factory=lambda: [get_table(t) for t in (Task.CT_ORGANS, Task.BODY)]
    )

    def entry(self, name: str) -> tuple[LabelEntry | None, str]:
        """The entry ``name`` finds and how it was found; None when only a generic code fits."""
        if self.table is not None:
            found = self.table.find(name)
            if found is not None:
                return found, "label table"
        for table in self.shipped:
            found = table.find(name)
            if found is not None:
                return found, f"fedseg table {table.task}"
        standard = self.synonyms.standard_name(name)
        if standard.tg263 is not None:
            for table in self.shipped:
                for candidate in table.labels:
                    if (candidate.tg263_name or "").lower() == standard.tg263.lower():
                        return candidate, f"TG-263 {standard.tg263}"
        return None, standard.reason


def generic_entry(name: str, number: int) -> LabelEntry:
    """A label with the generic anatomical-structure code and ``name`` as display name."""
    return LabelEntry(
        number=number,
        name=snake_name(name),
        display_name=name,
        category=GENERIC_CATEGORY,
        type=GENERIC_TYPE,
        color=_PALETTE[(number - 1) % len(_PALETTE)],
        rt_roi_interpreted_type=RoiInterpretedType.ORGAN,
    )


@dataclass
class BundleLabels:
    """The bundle's labels built up model by model, and each model's nnU-Net → bundle map."""

    coder: LabelCoder
    entries: list[LabelEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add_model(self, dataset: dict[str, Any], source: str) -> dict[int, int]:
        """Give every output of one model a bundle number; returns ``{nnU-Net value: number}``."""
        label_map: dict[int, int] = {}
        for value, name in model_outputs(dataset):
            found, how = self.coder.entry(name)
            key = found.name if found is not None else snake_name(name)
            existing = next((e for e in self.entries if e.name == key), None)
            if existing is None:
                number = len(self.entries) + 1
                if found is None:
                    existing = generic_entry(name, number)
                    message = (
                        f"{source}: label {name!r} ({value}) matches no label table entry "
                        f"({how}); coded as the generic SCT 91723000 'Anatomical structure'. "
                        "Pass --labels TABLE to code it"
                    )
                    self.warnings.append(message)
                    logger.warning(message)
                else:
                    existing = dataclasses.replace(found, number=number)
                    logger.info("%s: label %r coded from %s as %s", source, name, how, key)
                self.entries.append(existing)
            label_map[value] = existing.number
        return label_map

    def table(self, task: str) -> LabelTable:
        """The bundle's label table (QC relations to labels it lacks are dropped)."""
        names = {e.name for e in self.entries}
        entries = []
        for entry in self.entries:
            if entry.qc is not None and any(
                r.of is not None and r.of not in names for r in entry.qc.relations
            ):
                relations = [r for r in entry.qc.relations if r.of is None or r.of in names]
                entry = dataclasses.replace(
                    entry, qc=entry.qc.model_copy(update={"relations": relations})
                )
            entries.append(entry)
        return LabelTable(task=task, labels=tuple(entries))
