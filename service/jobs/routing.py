"""Routing rules applied to a study: which models run for its series.

Rules are tried in (priority, id) order per series; the first that matches a series names its
models, and a study runs the union of its series' models. A study that no rule matches runs the
default: every installed model whose manifest selects one of its series. Each chosen model still
runs only on the series its manifest's series rules select.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydicom
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db.models import RoutingRule

_TAGS = ["SeriesInstanceUID", "Modality", "BodyPartExamined", "SeriesDescription"]


class Rule(Protocol):
    """What a routing rule holds (the database row, or any object with these attributes)."""

    id: int
    priority: int
    modality: str
    body_part: str
    series_description: str
    models: list[str]


@dataclass(frozen=True)
class SeriesInfo:
    """The attributes of a series that rules match on."""

    series_instance_uid: str
    modality: str = ""
    body_part: str = ""
    description: str = ""


#: Returns the current rules (read at each job, so edits apply without a restart).
RuleSource = Callable[[], Sequence[Rule]]


def models_for(rules: Sequence[Rule], series: SeriesInfo) -> list[str]:
    """The models of the first rule matching ``series`` (empty when none matches)."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if rule.modality and rule.modality.upper() != series.modality.upper():
            continue
        if rule.body_part and rule.body_part.upper() != series.body_part.upper():
            continue
        if rule.series_description and not re.search(
            rule.series_description, series.description, re.IGNORECASE
        ):
            continue
        return list(rule.models)
    return []


def series_of(inputs: Sequence[Path]) -> list[SeriesInfo]:
    """One :class:`SeriesInfo` per series among the input files (unreadable files skipped)."""
    found: dict[str, SeriesInfo] = {}
    for path in inputs:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
        except (InvalidDicomError, OSError, ValueError):
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if uid and uid not in found:
            found[uid] = SeriesInfo(
                series_instance_uid=uid,
                modality=str(ds.get("Modality", "") or ""),
                body_part=str(ds.get("BodyPartExamined", "") or ""),
                description=str(ds.get("SeriesDescription", "") or ""),
            )
    return list(found.values())


def routed_models(rules: Sequence[Rule], series: Sequence[SeriesInfo]) -> tuple[str, ...]:
    """The union of the models routed to each series, in first-seen order (empty: default)."""
    chosen: dict[str, None] = {}
    for info in series:
        chosen.update(dict.fromkeys(models_for(rules, info)))
    return tuple(chosen)


def rule_source(factory: sessionmaker[Session]) -> RuleSource:
    """Read the rules from the database at each call."""

    def load() -> list[RoutingRule]:
        with factory() as session:
            rules = list(session.scalars(select(RoutingRule)))
            session.expunge_all()
        return rules

    return load
