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
4. **Further channels** of a multi-channel model (an nnU-Net PET/CT model: channel 0 CT,
   channel 1 PET): the series selected above is channel 0, the primary, whose grid the output
   lies on. Each other channel takes a series of that channel's modality in the same study and
   the same FrameOfReferenceUID (:func:`secondary_series`); without one the primary is refused,
   naming the channel and the study's other series. The chosen series is checked against the
   channel's intended use from its header (:func:`check_channel_header`), and its verdict
   joins the primary's: outside it, the pair is skipped unless forced. When several match,
   one inside the intended use is chosen first, then the one whose extent covers most of the
   primary's, then the higher number of slices, then the lower SeriesInstanceUID.

Routing rules and manifest series rules are one kind of criteria with one meaning
(:class:`~service.inference.manifest.SeriesRule`): modality equal (case-insensitive),
``body_part`` a regular expression matching the whole BodyPartExamined, and
``series_description`` a regular expression found anywhere in SeriesDescription (both
case-insensitive). An empty criterion matches any series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.dicom.planes import derived_study_uid
from service.dicom.volume import Volume, VolumePlan
from service.inference.bundle import ModelBundle
from service.inference.manifest import SeriesRule
from service.qc.applicability import (
    Applicability,
    Finding,
    check_channel_header,
    check_header,
    check_image,
)
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
    """A series one model will segment, with the header half of its intended-use verdict.

    ``secondary`` are the series of the model's further input channels (channel 1, 2, …),
    empty for a one-channel model; ``plan`` is channel 0, the primary.
    """

    plan: VolumePlan
    bundle: ModelBundle
    applicability: Applicability
    secondary: tuple[VolumePlan, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A series a model will not segment, and why."""

    plan: VolumePlan
    bundle: ModelBundle
    applicability: Applicability


@dataclass(frozen=True)
class Refused:
    """A primary series a multi-channel model cannot run on: a channel has no series."""

    plan: VolumePlan
    bundle: ModelBundle
    reason: str


@dataclass(frozen=True)
class Selection:
    """The outcome of the header half of the selection."""

    candidates: list[Candidate]
    skipped: list[Skipped]
    refused: list[Refused] = field(default_factory=list)


def _study_uid(plan: VolumePlan) -> str:
    header = plan.header
    return str(header.get("StudyInstanceUID", "")).strip() or derived_study_uid(header)


def _frame_uid(plan: VolumePlan) -> str:
    return str(plan.header.get("FrameOfReferenceUID", "")).strip()


def _bounds(plan: VolumePlan) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest patient coordinates of the stack's voxel centres (x, y, z), mm."""
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, plan.shape[0] - 1)
            for j in (0, plan.shape[1] - 1)
            for k in (0, plan.shape[2] - 1)
        ],
        dtype=np.float64,
    )
    points = (np.asarray(plan.affine, dtype=np.float64) @ corners.T)[:3].T
    return points.min(axis=0), points.max(axis=0)


def coverage(primary: VolumePlan, other: VolumePlan) -> float:
    """Fraction of ``primary``'s bounding box (patient space) inside ``other``'s, 0 to 1."""
    low, high = _bounds(primary)
    other_low, other_high = _bounds(other)
    extent = np.maximum(high - low, 1e-6)
    overlap = np.clip(np.minimum(high, other_high) - np.maximum(low, other_low), 0.0, None)
    # An axis on which the primary is flat (one slice) counts as covered when the point is inside.
    return float(np.prod(np.minimum(overlap / extent, 1.0)))


@dataclass(frozen=True)
class Channels:
    """The series of a model's further channels for one primary, or why there are none.

    ``findings`` are the intended-use checks of the chosen series (their messages name the
    channel and series); ``refused`` says why a channel has no series at all.
    """

    plans: tuple[VolumePlan, ...] = ()
    findings: tuple[Finding, ...] = ()
    refused: str | None = None


def secondary_series(
    primary: VolumePlan, bundle: ModelBundle, plans: Sequence[VolumePlan]
) -> Channels:
    """The series of ``bundle``'s channels 1, 2, … for ``primary``, or why there are none.

    Each channel takes a series of its modality in the primary's study and frame of reference
    (its values are resampled onto the primary's grid later, so both must share the patient
    coordinate system), checked against the channel's intended use
    (:meth:`~service.inference.manifest.Manifest.channel_intended_use`). Several matches: one
    inside the intended use before one outside, then most coverage of the primary's extent,
    then more slices, then the lower SeriesInstanceUID.
    """
    manifest = bundle.manifest
    recipe = manifest.nnunet
    if recipe is None or len(recipe.channels) < 2:
        return Channels()
    study, frame = _study_uid(primary), _frame_uid(primary)
    chosen: list[VolumePlan] = []
    findings: list[Finding] = []
    for index, channel in enumerate(recipe.channels[1:], start=1):
        name = f"channel {index} ({channel.name}, modality {channel.modality})"
        others = [
            p for p in plans if p is not primary and p.error is None and _study_uid(p) == study
        ]
        same_modality = [p for p in others if p.modality.upper() == channel.modality.upper()]
        if not same_modality:
            return Channels(
                refused=_no_series(manifest.name, name, index, channel.modality, others)
            )
        matching = [p for p in same_modality if frame and _frame_uid(p) == frame]
        if not matching:
            frames = ", ".join(sorted({_frame_uid(p) or "none" for p in same_modality}))
            return Channels(
                refused=(
                    f"model {manifest.name} needs {name} in the frame of reference of "
                    f"series {primary.stack.series_instance_uid} ({frame or 'none'}); the "
                    f"study's {channel.modality} series are in another one ({frames}), so they "
                    "cannot be resampled onto it; register them first (one FrameOfReferenceUID)"
                )
            )
        intended = manifest.channel_intended_use(index)
        judged = [
            (
                p,
                check_channel_header(
                    p.header,
                    p.modality,
                    p.geometry.median_step,
                    intended,
                    f"channel {index} ({channel.name}) series {p.stack.series_instance_uid}",
                ),
            )
            for p in matching
        ]
        best, verdict = min(
            judged,
            key=lambda pair: (
                not Applicability(tuple(pair[1])).inside,
                -round(coverage(primary, pair[0]), 6),
                -pair[0].shape[2],
                pair[0].stack.series_instance_uid,
            ),
        )
        chosen.append(best)
        findings.extend(verdict)
    return Channels(tuple(chosen), tuple(findings))


def _no_series(
    model: str, name: str, index: int, modality: str, others: Sequence[VolumePlan]
) -> str:
    """Why channel ``index`` has no series: none of its modality; names the study's others."""
    listed = ", ".join(
        f"series {p.stack.series_instance_uid} is {p.modality}" for p in others[:5]
    ) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    shown = f" ({listed}; channel {index} takes {modality} only)" if others else ""
    return (
        f"model {model} needs {name}, and the study has no {modality} series{shown}; "
        f"send the {modality} series with the study"
    )


def select_series(
    plans: Sequence[VolumePlan], bundles: Sequence[ModelBundle], force: bool = False
) -> Selection:
    """Pair every series with every model whose series rules select it, then check the header.

    A pair whose header is outside the model's intended use is skipped, unless ``force``; so
    is one whose further channel's series is (the channels' checks join the verdict). A
    primary series for which a multi-channel model finds no series of another channel is
    refused (:func:`secondary_series`).
    """
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    refused: list[Refused] = []
    for bundle in bundles:
        intended = bundle.manifest.intended_use
        for plan in plans:
            if not series_rules_select(bundle, SeriesAttributes.of(plan)):
                continue
            findings = check_header(plan.header, plan.modality, plan.geometry.median_step, intended)
            verdict = Applicability(tuple(findings), forced=force)
            if not verdict.runs:
                skipped.append(Skipped(plan, bundle, verdict))
                continue
            channels = secondary_series(plan, bundle, plans)
            if channels.refused is not None:
                refused.append(Refused(plan, bundle, channels.refused))
                continue
            verdict = verdict.extended(channels.findings)
            if not verdict.runs:
                skipped.append(Skipped(plan, bundle, verdict))
            else:
                candidates.append(Candidate(plan, bundle, verdict, channels.plans))
    return Selection(candidates, skipped, refused)


def confirm(candidate: Candidate, volume: Volume, body: BodyAnalysis | None) -> Applicability:
    """The full verdict once the image is read: body part from header and image."""
    intended = candidate.bundle.manifest.intended_use
    return candidate.applicability.extended(check_image(volume.header, body, intended))
