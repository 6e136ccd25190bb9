"""Pair image series with the RTSTRUCTs and SEGs drawn on them, from headers alone.

A mask belongs to the image stack of the task's modality that it references: by series UID
first, then by the image instances its contours or frames name. Only a mask that names no series
at all is paired by frame of reference, and only when exactly one stack shares it: a mask that
names a series which is not in the input is reported, never guessed onto another series of the
same frame of reference (a planning CT and a repeat CT often share one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from service.dicom.volume import Discovery, VolumePlan
from service.errors import MaskInputError
from service.masks.references import MaskReference, mask_kind_of, mask_reference
from training.sitedata.findings import Finding, Severity, Topic


@dataclass
class CaseInput:
    """One image stack and the masks that reference it."""

    plan: VolumePlan
    masks: list[MaskReference] = field(default_factory=list)
    datasets: dict[Path, Dataset] = field(default_factory=dict)  # each mask's header


@dataclass
class Pairing:
    """Cases to build, and what could not be paired."""

    cases: list[CaseInput]
    findings: list[Finding]


def _frame_of_reference(plan: VolumePlan) -> str:
    return str(plan.header.get("FrameOfReferenceUID", "")).strip()


def _series_label(plan: VolumePlan) -> str:
    label = f" [{plan.stack.label}]" if plan.stack.label else ""
    return f"{plan.modality} series {plan.stack.series_instance_uid}{label}"


def _candidates(ref: MaskReference, images: Sequence[VolumePlan]) -> tuple[list[VolumePlan], str]:
    """The image stacks ``ref`` points at, and by which reference."""
    by_series = [p for p in images if p.stack.series_instance_uid in ref.series_uids]
    if by_series:
        return by_series, "series"
    by_instance = [
        p
        for p in images
        if any(plane.sop_instance_uid in ref.instance_uids for plane in p.stack.planes)
    ]
    if by_instance:
        return by_instance, "image instances"
    if ref.series_uids:
        return [], "series"
    by_frame = [p for p in images if _frame_of_reference(p) in ref.frames_of_reference]
    return by_frame, "frame of reference"


def pair_masks(discovery: Discovery, modality: str) -> Pairing:
    """Pair every RTSTRUCT and SEG of ``discovery`` with an image stack of ``modality``."""
    images = [p for p in discovery.plans if p.modality == modality]
    others = [p for p in discovery.plans if p.modality != modality]
    cases = {id(p): CaseInput(p) for p in images}
    findings: list[Finding] = []
    for file in discovery.non_image:
        if mask_kind_of(file.dataset) is None:
            continue
        source = str(file.path)
        try:
            ref = mask_reference(file.path, file.dataset)
        except (MaskInputError, ValueError, TypeError, AttributeError) as exc:
            findings.append(
                Finding(Severity.ERROR, Topic.READ, f"unreadable mask: {exc}", source=source)
            )
            continue
        matched, how = _candidates(ref, images)
        if len(matched) == 1:
            cases[id(matched[0])].masks.append(ref)
            cases[id(matched[0])].datasets[ref.path] = file.dataset
            if how != "series":
                findings.append(
                    Finding(
                        Severity.INFO,
                        Topic.PAIRING,
                        f"{ref.kind.value.upper()} paired with its image by {how}, not by "
                        "series UID",
                        source=source,
                    )
                )
            continue
        severity, text = _unpaired(ref, matched, others, modality)
        findings.append(Finding(severity, Topic.PAIRING, text, source=source))
    for case in cases.values():
        if not case.masks:
            findings.append(
                Finding(
                    Severity.INFO,
                    Topic.PAIRING,
                    f"{_series_label(case.plan)} has no RTSTRUCT or SEG; not a training case",
                    source=str(case.plan.stack.planes[0].path.parent),
                )
            )
    return Pairing([c for c in cases.values() if c.masks], findings)


def _unpaired(
    ref: MaskReference, matched: list[VolumePlan], others: list[VolumePlan], modality: str
) -> tuple[Severity, str]:
    kind = ref.kind.value.upper()
    if matched:
        listed = "; ".join(_series_label(p) for p in matched[:3])
        return Severity.ERROR, (
            f"{kind} matches {len(matched)} {modality} image stacks ({listed}); "
            "pass one series per folder or remove the others"
        )
    elsewhere = [
        p
        for p in others
        if p.stack.series_instance_uid in ref.series_uids
        or (not ref.series_uids and _frame_of_reference(p) in ref.frames_of_reference)
    ]
    if elsewhere:
        return Severity.INFO, (
            f"{kind} belongs to {_series_label(elsewhere[0])}, not a {modality} series of this "
            "task; skipped"
        )
    return Severity.ERROR, (
        f"{kind} references an image series that is not in the input "
        f"({ref.describe_references()}); export that series with it"
    )


def source_of(plan: VolumePlan) -> Path:
    """The folder of a stack's first file (private report only)."""
    return plan.stack.planes[0].path.parent
