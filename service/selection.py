"""The one series-selection step: which model runs on which series, and why not.

Used by ``fedseg segment`` and the server's workers alike, on the headers read once by
:func:`service.dicom.volume.discover`:

1. **Routing** (server): the first routing rule (by priority, then id) that matches a series
   names its models; a study runs the union over its series. Without a match, or without
   rules, every installed model (the newest of each task) is a candidate.
2. **Series rules** of each candidate's manifest pick the series it could segment.
3. **Intended use** (:mod:`service.qc.applicability`): modality, age and slice thickness from
   the header, here; body part and what the image shows once the volume is read
   (:func:`confirm`). A series outside the intended use is skipped with its reasons, unless
   the request forces it.

Routing rules and manifest series rules are one kind of criteria with one meaning
(:class:`~service.inference.manifest.SeriesRule`): modality equal (case-insensitive),
``body_part`` a regular expression matching the whole BodyPartExamined, and
``series_description`` a regular expression found anywhere in SeriesDescription (both
case-insensitive). An empty criterion matches any series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from service.dicom.volume import Volume, VolumePlan
from service.inference.bundle import ModelBundle
from service.inference.manifest import SeriesRule
from service.qc.applicability import Applicability, check_header, check_image
from service.qc.body import BodyAnalysis


class Rule(Protocol):
    """A routing rule (the database row, or any object with these attributes)."""

    id: int
    priority: int
    modality: str
    body_part: str
    series_description: str
    models: list[str]


@dataclass(frozen=True)
class SeriesAttributes:
    """The attributes of a series that criteria match on."""

    series_instance_uid: str
    modality: str = ""
    body_part: str = ""
    description: str = ""

    @classmethod
    def of(cls, plan: VolumePlan) -> SeriesAttributes:
        """The attributes of a planned stack (its first plane's header)."""
        header = plan.header
        return cls(
            series_instance_uid=plan.stack.series_instance_uid,
            modality=plan.modality,
            body_part=str(header.get("BodyPartExamined", "") or ""),
            description=str(header.get("SeriesDescription", "") or ""),
        )


def criteria(rule: Rule) -> SeriesRule:
    """A routing rule's criteria, as the manifest's series-rule type (one meaning for both)."""
    return SeriesRule(
        modality=rule.modality or "",
        body_part=rule.body_part or None,
        series_description=rule.series_description or None,
    )


def models_for(rules: Sequence[Rule], series: SeriesAttributes) -> list[str]:
    """The models of the first rule matching ``series`` (empty when none matches)."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if criteria(rule).matches(series.modality, series.description, series.body_part):
            return list(rule.models)
    return []


def routed_models(rules: Sequence[Rule], series: Sequence[SeriesAttributes]) -> tuple[str, ...]:
    """The union of the models routed to each series, in first-seen order (empty: default)."""
    chosen: dict[str, None] = {}
    for info in series:
        chosen.update(dict.fromkeys(models_for(rules, info)))
    return tuple(chosen)


def series_rules_select(bundle: ModelBundle, series: SeriesAttributes) -> bool:
    """Whether ``bundle``'s series rules select ``series`` (no rules: its modality)."""
    manifest = bundle.manifest
    if not manifest.series:
        return series.modality.upper() == manifest.modality.upper()
    return any(
        rule.matches(series.modality, series.description, series.body_part)
        for rule in manifest.series
    )


@dataclass(frozen=True)
class Candidate:
    """A series one model will segment, with the header half of its intended-use verdict."""

    plan: VolumePlan
    bundle: ModelBundle
    applicability: Applicability


@dataclass(frozen=True)
class Skipped:
    """A series a model will not segment, and why."""

    plan: VolumePlan
    bundle: ModelBundle
    applicability: Applicability


@dataclass(frozen=True)
class Selection:
    """The outcome of the header half of the selection."""

    candidates: list[Candidate]
    skipped: list[Skipped]


def select_series(
    plans: Sequence[VolumePlan], bundles: Sequence[ModelBundle], force: bool = False
) -> Selection:
    """Pair every series with every model whose series rules select it, then check the header.

    A pair whose header is outside the model's intended use is skipped, unless ``force``.
    """
    candidates, skipped = [], []
    for bundle in bundles:
        intended = bundle.manifest.intended_use
        for plan in plans:
            if not series_rules_select(bundle, SeriesAttributes.of(plan)):
                continue
            findings = check_header(plan.header, plan.modality, plan.geometry.median_step, intended)
            verdict = Applicability(tuple(findings), forced=force)
            if verdict.runs:
                candidates.append(Candidate(plan, bundle, verdict))
            else:
                skipped.append(Skipped(plan, bundle, verdict))
    return Selection(candidates, skipped)


def confirm(candidate: Candidate, volume: Volume, body: BodyAnalysis | None) -> Applicability:
    """The full verdict once the image is read: body part from header and image."""
    intended = candidate.bundle.manifest.intended_use
    return candidate.applicability.extended(check_image(volume.header, body, intended))
