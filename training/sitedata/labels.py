"""One case's label map from the structures drawn on its image, with the policy for conflicts.

Policy (stated in ``docs/federation.md`` and in every site index):

- **Not contoured is unknown, not background.** Only labels with at least one non-empty mapped
  structure are *contoured*; the partial-label loss and SegViz aggregation never train a case on
  the others.
- **Empty structures** (declared, but no contour on the referenced series): the label stays
  unknown for the case.
- **Refused structures** (a contour the reader could not place, e.g. off the image's slices):
  the structure is left out and its label is unknown for the case, even where other structures
  map to it (a target label missing one lesion would teach that lesion as background).
- **Duplicates** (two structures mapped to one label): identical masks count once; for target
  labels (GTV, CTV, PTV: several lesions are normal) the structures are united; for any other
  label nobody can tell which one is right, so the label is unknown for the case.
- **Overlaps** between two labels: up to :data:`OVERLAP_TOLERANCE` of the smaller structure is a
  boundary disagreement, and those voxels go to the smaller structure; more than that means
  one of the two is not what its name says, and both labels are unknown for the case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.labels.registry import LabelEntry, LabelTable, RoiInterpretedType
from service.labels.roi_names import MatchStatus, RoiMatch, RoiNameMapper
from service.masks.references import MaskReference
from service.regions import RegionSet
from training.sitedata.findings import Finding, Severity, Topic

#: Overlap, as a fraction of the smaller structure, still taken as a boundary disagreement.
OVERLAP_TOLERANCE = 0.05
_TARGETS = {RoiInterpretedType.GTV, RoiInterpretedType.CTV, RoiInterpretedType.PTV}


@dataclass
class CaseLabels:
    """A case's label map (task label numbers, 0 = background or unknown) and what it holds."""

    labels: np.ndarray
    contoured: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    matches: list[RoiMatch] = field(default_factory=list)


@dataclass
class _Drawn:
    roi: str
    mask: np.ndarray


def assemble_labels(
    sources: Sequence[tuple[MaskReference, RegionSet]],
    table: LabelTable,
    mapper: RoiNameMapper,
    case: str,
) -> CaseLabels:
    """Map every structure of ``sources`` to a label and apply the conflict policy."""
    shape = sources[0][1].shape
    findings: list[Finding] = []
    matches: list[RoiMatch] = []
    drawn: dict[str, list[_Drawn]] = {}
    refused: set[str] = set()
    for ref, regions in sources:
        source = str(ref.path)
        read = {r.number for r in regions}
        for declared in ref.structures:
            if declared.number not in read:
                match = mapper.match(declared.name)
                matches.append(match)
                findings.extend(_name_findings(match, case, source))
                if declared.number not in regions.refused:
                    findings.append(_empty(case, match, source, "has no contour data"))
                elif match.label is not None:
                    refused.add(match.label)
                    text = (
                        f"ROI {match.roi_name!r} ({match.label}) was refused by the reader; the "
                        "label stays unknown for this case"
                    )
                    findings.append(Finding(Severity.WARNING, Topic.READ, text, case, source))
        for region in regions:
            match = mapper.match(region.name)
            matches.append(match)
            findings.extend(_name_findings(match, case, source))
            if match.status is not MatchStatus.MAPPED or match.label is None:
                continue
            if not region.mask.any():
                findings.append(_empty(case, match, source, "has no contour on this series"))
                continue
            drawn.setdefault(match.label, []).append(_Drawn(region.name, region.mask))
    masks = {}
    for label, items in drawn.items():
        if label in refused:
            continue
        mask, finding = _resolve_duplicates(table.by_name(label), items, case)
        if finding is not None:
            findings.append(finding)
        if mask is not None:
            masks[label] = mask
    findings.extend(_resolve_overlaps(masks, case))
    labels = np.zeros(shape, dtype=np.uint8 if len(table.labels) < 256 else np.uint16)
    for label in sorted(masks, key=lambda n: -int(masks[n].sum())):  # smaller ones drawn last
        labels[masks[label]] = table.by_name(label).number
    contoured = tuple(n for n in table.names if n in masks)
    return CaseLabels(labels, contoured, findings, matches)


def _empty(case: str, match: RoiMatch, source: str, what: str) -> Finding:
    roi = repr(match.roi_name)
    if match.label is None:
        return Finding(Severity.INFO, Topic.EMPTY, f"ROI {roi} {what}", case, source)
    text = f"ROI {roi} ({match.label}) {what}; the label stays unknown for this case"
    return Finding(Severity.WARNING, Topic.EMPTY, text, case, source)


def _name_findings(match: RoiMatch, case: str, source: str) -> list[Finding]:
    roi = repr(match.roi_name)
    if match.status is MatchStatus.MAPPED:
        return [
            Finding(
                Severity.INFO,
                Topic.ROI_NAME,
                f"ROI {roi} -> {match.label} ({match.reason})",
                case,
                source,
            )
        ]
    if match.status is MatchStatus.AMBIGUOUS:
        could = " or ".join(match.candidates)
        text = (
            f"ROI {roi} is ambiguous ({match.reason}; could be {could}); not used: settle it "
            "in the mapping file"
        )
        return [Finding(Severity.WARNING, Topic.ROI_NAME, text, case, source)]
    if match.status is MatchStatus.UNMAPPED:
        text = (
            f"ROI {roi} is not mapped ({match.reason}); set a label or 'ignore' in the mapping file"
        )
        return [
            Finding(
                Severity.WARNING if match.tg263 is None else Severity.INFO,
                Topic.ROI_NAME,
                text,
                case,
                source,
            )
        ]
    return []


def _resolve_duplicates(
    entry: LabelEntry, items: list[_Drawn], case: str
) -> tuple[np.ndarray | None, Finding | None]:
    if len(items) == 1:
        return items[0].mask, None
    names = ", ".join(repr(i.roi) for i in items)
    if all(np.array_equal(items[0].mask, i.mask) for i in items[1:]):
        text = f"{len(items)} identical structures ({names}) for {entry.name}; used once"
        return items[0].mask, Finding(Severity.INFO, Topic.DUPLICATE, text, case)
    if entry.rt_roi_interpreted_type in _TARGETS:
        united = np.logical_or.reduce([i.mask for i in items])
        text = f"{len(items)} structures ({names}) for target label {entry.name}; united"
        return united, Finding(Severity.INFO, Topic.DUPLICATE, text, case)
    text = (
        f"{len(items)} different structures ({names}) map to {entry.name}; the label is "
        "unknown for this case: map all but one to 'ignore' in the mapping file"
    )
    return None, Finding(Severity.WARNING, Topic.DUPLICATE, text, case)


def _resolve_overlaps(masks: dict[str, np.ndarray], case: str) -> list[Finding]:
    """Apply the overlap policy in place (drop labels or let the smaller structure win)."""
    findings = []
    names = sorted(masks)
    dropped: set[str] = set()
    for a_index, a in enumerate(names):
        for b in names[a_index + 1 :]:
            if a in dropped or b in dropped:
                continue
            shared = int(np.count_nonzero(masks[a] & masks[b]))
            if not shared:
                continue
            smaller = min(a, b, key=lambda n: int(masks[n].sum()))
            fraction = shared / int(masks[smaller].sum())
            if fraction <= OVERLAP_TOLERANCE:
                text = (
                    f"{a} and {b} overlap by {shared} voxels ({fraction:.1%} of {smaller}); "
                    f"those voxels go to {smaller}"
                )
                findings.append(Finding(Severity.INFO, Topic.OVERLAP, text, case))
                continue
            dropped |= {a, b}
            text = (
                f"{a} and {b} overlap by {shared} voxels ({fraction:.1%} of {smaller}, more "
                f"than {OVERLAP_TOLERANCE:.0%}); both labels are unknown for this case: check "
                "that each structure is what its name says"
            )
            findings.append(Finding(Severity.WARNING, Topic.OVERLAP, text, case))
    for name in dropped:
        del masks[name]
    return findings
