"""Free-text RT ROI names → AAPM TG-263 standard names → a task's labels.

Planning systems export whatever the planner typed ("Lung_L", "LUNG LT", "L Lung", "Lung-Left").
A name is read as lower-case words (separators, case and camelCase do not matter), a side word is
taken from either end, and the rest is looked up in a data table of spellings
(``roi_synonyms.json``). The result is a TG-263 name, which every label table entry carries as
``tg263_name``; that is the one key between ROI names and labels.

The rules err on the side of *not* mapping: a paired organ without a side ("Kidney"), a name
with both sides, a derived structure (PRV, ring, "_opt", "z…" helpers) or any unknown word leaves
the name unmapped or ambiguous, to be settled by the centre in its mapping file. A wrong label
teaches a model a wrong organ; a missing one only costs a case that label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from service.errors import ConfigurationError
from service.labels.registry import TG263_NAME, LabelEntry, LabelTable

SYNONYMS_FILE = Path(__file__).resolve().parent / "roi_synonyms.json"
#: Mapping-file value that drops an ROI on purpose (no report as unmapped).
IGNORE = "ignore"
SIDES = ("L", "R")

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_WORD = re.compile(r"[A-Za-z]+|[0-9]+")
# TG-263 section 7: helper structures not meant for evaluation start with "z" or "_".
_HELPER = re.compile(r"^(_|z[A-Z0-9_])")


def words(name: str) -> list[str]:
    """The lower-case words of an ROI name: split at separators, camelCase and letter/digit."""
    return [w.lower() for w in _WORD.findall(_CAMEL.sub(" ", name))]


def _squash(text: str) -> str:
    return "".join(words(text))


class MatchStatus(StrEnum):
    """What became of one ROI name."""

    MAPPED = "mapped"
    AMBIGUOUS = "ambiguous"
    UNMAPPED = "unmapped"
    IGNORED = "ignored"


@dataclass(frozen=True)
class StandardName:
    """What an ROI name says in TG-263 terms.

    ``tg263`` is set when the name is recognised as one structure; ``candidates`` lists the
    structures an ambiguous name could be (a paired organ without a side); ``reason`` says why
    neither, or how the name was read.
    """

    tg263: str | None
    candidates: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class _Structure:
    tg263: str
    lateral: bool
    combined: str | None


@dataclass(frozen=True)
class SynonymTable:
    """The spelling table, validated: every spelling names exactly one structure."""

    sides: Mapping[str, str]  # word → "L" / "R"
    both_sides: frozenset[str]
    ignored: frozenset[str]
    derived: frozenset[str]
    spellings: Mapping[str, _Structure]  # squashed spelling → structure (side-less base)
    combined: Mapping[str, str]  # squashed spelling → TG-263 name of both sides together
    targets: tuple[tuple[str, str], ...]  # (word prefix, TG-263 name), longest prefix first

    @classmethod
    def load(cls, path: Path = SYNONYMS_FILE) -> SynonymTable:
        """Read and validate the spelling table.

        Raises
        ------
        ConfigurationError
            If the file is unreadable or a spelling names two structures.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls._from_data(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"ROI synonym table {path} is invalid: {exc}") from exc

    @classmethod
    def _from_data(cls, data: dict) -> SynonymTable:
        sides = {w: side for side, spelled in data["laterality"].items() for w in spelled}
        if set(sides.values()) - set(SIDES):
            raise ValueError(f"laterality keys must be {SIDES}")
        spellings: dict[str, _Structure] = {}
        combined: dict[str, str] = {}

        owners: dict[str, str] = {w: "laterality" for w in sides}

        def add(table: dict, spelling: str, value: object, owner: str) -> None:
            key = _squash(spelling)
            if key in owners:
                raise ValueError(f"{owner}: spelling {spelling!r} is already one of {owners[key]}")
            owners[key] = owner
            table[key] = value

        for item in data["structures"]:
            structure = _Structure(
                str(item["tg263"]), bool(item.get("lateral", False)), item.get("combined")
            )
            names = [structure.tg263, *filter(None, [structure.combined])]
            for name in names:
                if not TG263_NAME.match(name + ("_L" if structure.lateral else "")):
                    raise ValueError(f"{name!r} is not a TG-263 name")
            for spelling in item["synonyms"]:
                add(spellings, spelling, structure, structure.tg263)
            for spelling in item.get("combined_synonyms", []):
                if structure.combined is None:
                    raise ValueError(f"{structure.tg263}: combined_synonyms without combined")
                add(combined, spelling, structure.combined, structure.combined)
        targets = sorted(
            ((str(t["prefix"]).lower(), str(t["tg263"])) for t in data["targets"]),
            key=lambda t: -len(t[0]),
        )
        return cls(
            sides=sides,
            both_sides=frozenset(data["both_sides"]),
            ignored=frozenset(data["ignored_words"]),
            derived=frozenset(data["derived_words"]),
            spellings=spellings,
            combined=combined,
            targets=tuple(targets),
        )

    def standard_name(self, roi_name: str) -> StandardName:
        """The TG-263 name that ``roi_name`` spells, or why there is none."""
        text = roi_name.strip()
        found = words(text)
        if not found:
            return StandardName(None, reason="the name has no letters or digits")
        if _HELPER.match(text):
            return StandardName(None, reason="a 'z'/'_' prefix marks a helper structure (TG-263)")
        target = self._target(found)
        if target is not None:
            return target
        derived = sorted(set(found) & self.derived)
        if derived:
            return StandardName(None, reason=f"derived structure ({', '.join(derived)})")
        return self._structure(found)

    def _target(self, found: list[str]) -> StandardName | None:
        for prefix, tg263 in self.targets:
            if found[0].startswith(prefix):
                rest = [found[0][len(prefix) :], *found[1:]]
                derived = sorted({w for w in rest if w} & self.derived)
                if derived:
                    return StandardName(
                        None, reason=f"derived from a {tg263} ({', '.join(derived)})"
                    )
                return StandardName(tg263, reason=f"target volume {tg263}")
        return None

    def _structure(self, found: list[str]) -> StandardName:
        found = [w for w in found if w not in self.ignored]
        sides: set[str] = set()
        both = False
        while found and (found[0] in self.sides or found[0] in self.both_sides):
            word = found.pop(0)
            both |= word in self.both_sides
            sides |= {self.sides[word]} if word in self.sides else set()
        while found and (found[-1] in self.sides or found[-1] in self.both_sides):
            word = found.pop()
            both |= word in self.both_sides
            sides |= {self.sides[word]} if word in self.sides else set()
        key = "".join(found)
        if key in self.combined:
            if sides:
                return StandardName(None, reason="names both sides and one side")
            return StandardName(self.combined[key], reason="both sides together")
        structure = self.spellings.get(key)
        if structure is None:
            return StandardName(None, reason=f"{' '.join(found) or 'nothing'!r} is no known name")
        if not structure.lateral:
            if sides or both:
                return StandardName(None, reason=f"{structure.tg263} has no sides")
            return StandardName(structure.tg263, reason="known spelling")
        if both:
            if sides or structure.combined is None:
                return StandardName(None, reason=f"{structure.tg263}: unclear which side")
            return StandardName(structure.combined, reason="both sides together")
        if len(sides) == 1:
            return StandardName(f"{structure.tg263}_{sides.pop()}", reason="known spelling")
        paired = tuple(f"{structure.tg263}_{s}" for s in SIDES)
        why = "names both sides" if sides else "no side given"
        return StandardName(None, candidates=paired, reason=f"{why}: {' or '.join(paired)}")


@dataclass(frozen=True)
class RoiMatch:
    """The label an ROI name maps to, or why it maps to none (``reason``)."""

    roi_name: str
    status: MatchStatus
    label: str | None = None
    candidates: tuple[str, ...] = ()
    tg263: str | None = None
    reason: str = ""


@dataclass
class RoiNameMapper:
    """Maps ROI names to the labels of one task: mapping file first, then TG-263 and spellings.

    Parameters
    ----------
    table
        The task's label table.
    overrides
        The centre's mapping file: exact ROI name → label name, the label's TG-263 name,
        ``"ignore"``, or None (not settled: use the automatic rules).
    """

    table: LabelTable
    overrides: Mapping[str, str | None] = field(default_factory=dict)
    synonyms: SynonymTable = field(default_factory=SynonymTable.load)

    def __post_init__(self) -> None:
        self.overrides = {k.strip(): v for k, v in self.overrides.items()}
        for name, value in self.overrides.items():
            if value is not None and value != IGNORE and self.entry(value) is None:
                raise ConfigurationError(
                    f"mapping for ROI {name!r}: {value!r} is not a label of {self.table.task} "
                    f"(use one of {', '.join(self.table.names)}, a TG-263 name, "
                    f"{IGNORE!r} or null)"
                )

    def entry(self, value: str) -> LabelEntry | None:
        """The label called ``value``, by label name or (case-insensitive) TG-263 name."""
        for entry in self.table.labels:
            tg263 = (entry.tg263_name or "").lower()
            if value == entry.name or value.strip().lower() == tg263:
                return entry
        return None

    def match(self, roi_name: str) -> RoiMatch:
        """What ``roi_name`` maps to."""
        name = roi_name.strip()
        chosen = self.overrides.get(name)
        if chosen == IGNORE:
            return RoiMatch(roi_name, MatchStatus.IGNORED, reason="ignored by the mapping file")
        if chosen is not None:
            entry = self.entry(chosen)
            assert entry is not None  # checked in __post_init__
            return self._mapped(roi_name, entry, "mapping file")
        exact = next((e for e in self.table.labels if e.name == name), None)
        if exact is not None:
            return self._mapped(roi_name, exact, "label name")
        standard = self.synonyms.standard_name(name)
        if standard.tg263 is not None:
            entries = self._by_tg263(standard.tg263)
            if len(entries) == 1:
                return self._mapped(roi_name, entries[0], f"TG-263 {standard.tg263}")
            if entries:
                return RoiMatch(
                    roi_name,
                    MatchStatus.AMBIGUOUS,
                    candidates=tuple(e.name for e in entries),
                    tg263=standard.tg263,
                    reason=f"{standard.tg263} is more than one label of {self.table.task}",
                )
            return RoiMatch(
                roi_name,
                MatchStatus.UNMAPPED,
                tg263=standard.tg263,
                reason=f"TG-263 {standard.tg263} is not a label of {self.table.task}",
            )
        candidates = tuple(e.name for c in standard.candidates for e in self._by_tg263(c))
        if candidates:
            return RoiMatch(
                roi_name, MatchStatus.AMBIGUOUS, candidates=candidates, reason=standard.reason
            )
        return RoiMatch(roi_name, MatchStatus.UNMAPPED, reason=standard.reason)

    def _by_tg263(self, tg263: str) -> list[LabelEntry]:
        return [e for e in self.table.labels if (e.tg263_name or "").lower() == tg263.lower()]

    @staticmethod
    def _mapped(roi_name: str, entry: LabelEntry, how: str) -> RoiMatch:
        return RoiMatch(
            roi_name, MatchStatus.MAPPED, label=entry.name, tg263=entry.tg263_name, reason=how
        )
