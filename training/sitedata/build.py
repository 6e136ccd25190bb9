"""``fedseg dataset build``: a centre's DICOM with RTSTRUCT/SEG → training cases of one task.

Steps: discover every series and mask under the inputs (headers only), pair masks with image
stacks of the task's modality, then per case read the image and every mask through the service's
readers, map ROI names to labels, apply the conflict policy and QC, and write the case under a
pseudonym. A bad object or case is reported and left out; the rest still builds.

Two folders come out: the site folder (``--out``: cases and index, no identifiers) and the
centre's private folder (pseudonym map, full report with source paths, the ROI mapping file).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np
from pydicom.dataset import Dataset

from service.config import Settings, get_settings
from service.dicom.geometry import voxel_volume_ml
from service.dicom.volume import Volume, discover, load_volume
from service.errors import ConfigurationError, DicomInputError, MaskInputError, SuvError
from service.labels.registry import LabelTable, get_table
from service.labels.roi_names import RoiMatch, RoiNameMapper
from service.masks.references import MaskKind, MaskReference
from service.masks.rtstruct_reader import read_rtstruct
from service.masks.seg_reader import read_seg
from service.pet.suv import to_suv
from service.regions import RegionSet
from training.sitedata import labels as label_policy
from training.sitedata.findings import Finding, Severity, Topic
from training.sitedata.labels import assemble_labels
from training.sitedata.layout import (
    UNKNOWN_POLICY,
    CaseData,
    CaseRecord,
    FedsegWriter,
    is_site_folder,
)
from training.sitedata.mapping_file import read_mapping, write_mapping
from training.sitedata.nnunet import NnunetWriter
from training.sitedata.pairing import CaseInput, pair_masks, source_of
from training.sitedata.pseudonyms import PseudonymMap, check_site_name
from training.sitedata.qc import (
    check_volumes,
    contours_outside,
    label_volumes,
    mask_findings,
    volume_priors,
)

logger = logging.getLogger(__name__)

PSEUDONYMS = "pseudonyms.csv"
REPORT = "build-report.json"
MAPPING = "roi-mapping.json"
_UNITS = {"CT": "HU", "PT": "SUVbw (g/mL)", "MR": "as stored (arbitrary units)"}


class SiteFormat(StrEnum):
    """Layouts ``dataset build`` writes."""

    FEDSEG = "fedseg"
    NNUNET = "nnunet"


@dataclass(frozen=True)
class BuildOptions:
    """What to build from where."""

    dicom: tuple[Path, ...]
    task: str
    out: Path
    site: str
    mapping: Path | None = None
    format: SiteFormat = SiteFormat.FEDSEG
    private: Path | None = None  # default: <out>-private beside the site folder

    @property
    def private_dir(self) -> Path:
        """The centre's private folder."""
        return self.private or self.out.with_name(f"{self.out.name}-private")


@dataclass
class BuildResult:
    """What a build wrote and found."""

    records: list[CaseRecord]
    findings: list[Finding]
    index: Path
    mapping: Path
    report: Path
    pseudonyms: Path


class _Writer(Protocol):
    def write_case(self, case: CaseData) -> CaseRecord: ...

    def finish(self, records: Sequence[CaseRecord], policy: dict[str, str]) -> Path: ...


@dataclass
class _Context:
    table: LabelTable
    modality: str
    mapper: RoiNameMapper
    pseudonyms: PseudonymMap
    writer: _Writer
    priors: dict[str, tuple[float, float]]
    findings: list[Finding] = field(default_factory=list)
    matches: list[RoiMatch] = field(default_factory=list)


def policy() -> dict[str, str]:
    """The conflict policy, as written into every index."""
    return {
        "unknown": UNKNOWN_POLICY,
        "empty": "a structure with no contour on the referenced series leaves its label unknown",
        "refused": "a structure whose contours do not fit the image (off its slices) is left out "
        "and its label is unknown for the case",
        "duplicates": "identical: used once; target labels (GTV/CTV/PTV): united; otherwise the "
        "label is unknown for the case",
        "overlaps": f"up to {label_policy.OVERLAP_TOLERANCE:.0%} of the smaller structure: those "
        "voxels go to the smaller one; more: both labels unknown for the case",
        "unmapped": "ROI names that map to no label, or to more than one, are not used",
    }


def task_modality(task: str) -> str:
    """The image modality of a trainable task (torch-free: :mod:`training.tasks`)."""
    from training.tasks import get_task

    try:
        return get_task(task).modality
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def _prepare_out(options: BuildOptions) -> None:
    out = options.out
    if out.exists() and any(out.iterdir()):
        if not (is_site_folder(out) or _is_built_nnunet(out)):
            raise ConfigurationError(
                f"{out} exists and is not a built site folder; pass an empty or new folder"
            )
        for child in ("cases", "imagesTr", "labelsTr"):
            shutil.rmtree(out / child, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    if (
        options.private_dir.resolve() == out.resolve()
        or options.private_dir.resolve().is_relative_to(out.resolve())
    ):
        raise ConfigurationError("--private must lie outside the site folder (--out)")


def _is_built_nnunet(folder: Path) -> bool:
    """Whether ``folder`` is an nnU-Net raw dataset that ``dataset build`` wrote."""
    try:
        return "fedseg" in json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def build_site(
    options: BuildOptions,
    settings: Settings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Build the site folder of ``options``; see the module docstring.

    Raises
    ------
    ConfigurationError
        If the task, site name, mapping file or output folder cannot be used.
    DicomInputError
        If the inputs hold no DICOM at all.
    """
    check_site_name(options.site)
    table = get_table(options.task)
    modality = task_modality(options.task)
    overrides = read_mapping(options.mapping, table.task) if options.mapping else {}
    _prepare_out(options)
    private = options.private_dir
    writer_type = NnunetWriter if options.format is SiteFormat.NNUNET else FedsegWriter
    context = _Context(
        table=table,
        modality=modality,
        mapper=RoiNameMapper(table, overrides),
        pseudonyms=PseudonymMap.load(private / PSEUDONYMS, options.site),
        writer=writer_type(options.out, table, options.site, modality, _UNITS[modality]),
        priors=volume_priors(table),
    )
    pairing = pair_masks(discover(options.dicom, settings or get_settings()), modality)
    context.findings.extend(pairing.findings)
    records = []
    for number, case in enumerate(pairing.cases, start=1):
        record = _build_case(case, context)
        if record is not None:
            records.append(record)
        if progress is not None:
            progress(number, len(pairing.cases))
    index = context.writer.finish(records, policy())
    result = BuildResult(
        records=records,
        findings=context.findings,
        index=index,
        mapping=write_mapping(private / MAPPING, table, context.matches, overrides),
        report=_write_report(private / REPORT, options, records, context.findings),
        pseudonyms=context.pseudonyms.save(private / PSEUDONYMS),
    )
    logger.info("built %d of %d cases for task %s", len(records), len(pairing.cases), table.task)
    return result


def _image(volume: Volume, modality: str) -> np.ndarray:
    """CT and MR as read; PET in SUVbw, whatever units the scanner stored."""
    if modality == "PT":
        suv, _ = to_suv(volume)
        return suv
    return volume.array


def _read_mask(ref: MaskReference, volume: Volume, table: LabelTable) -> RegionSet:
    if ref.kind is MaskKind.RTSTRUCT:
        return read_rtstruct(ref.path, volume, table)
    return read_seg(ref.path, volume, table)


def _sanitised(exc: Exception, ref: MaskReference) -> str:
    """An error message without the file's path (folder names often hold patient names)."""
    return str(exc).replace(f"{ref.path}: ", "").replace(str(ref.path), "the file")


def _build_case(case: CaseInput, context: _Context) -> CaseRecord | None:
    plan = case.plan
    source = str(source_of(plan))
    case_id, subject = context.pseudonyms.case_id(
        plan.header, plan.stack.series_instance_uid, plan.stack.label, source
    )
    try:
        volume = load_volume(plan)
        image = _image(volume, context.modality)
    except (DicomInputError, SuvError) as exc:
        context.findings.append(
            Finding(
                Severity.ERROR,
                Topic.IMAGE,
                f"image not usable, case left out: {exc}",
                case_id,
                source,
            )
        )
        return None
    findings = [Finding(Severity.INFO, Topic.IMAGE, w, case_id, source) for w in volume.warnings]
    sources = []
    for ref in case.masks:
        try:
            regions = _read_mask(ref, volume, context.table)
        except MaskInputError as exc:
            text = f"{ref.kind.value.upper()} not used: {_sanitised(exc, ref)}"
            findings.append(Finding(Severity.ERROR, Topic.READ, text, case_id, str(ref.path)))
            continue
        findings += mask_findings(regions.warnings, case_id, str(ref.path))
        if ref.kind is MaskKind.RTSTRUCT:
            names = {s.number: s.name for s in ref.structures}
            findings += contours_outside(_dataset(case, ref), volume, names, case_id, str(ref.path))
        sources.append((ref, regions))
    if not sources:
        context.findings.extend(findings)
        return None
    assembled = assemble_labels(sources, context.table, context.mapper, case_id)
    context.matches.extend(assembled.matches)
    findings += assembled.findings
    if not assembled.contoured:
        text = (
            f"no structure maps to a label of {context.table.task}; case left out "
            "(see the mapping file)"
        )
        findings.append(Finding(Severity.ERROR, Topic.ROI_NAME, text, case_id))
        context.findings.extend(findings)
        return None
    volumes = label_volumes(assembled.labels, context.table, voxel_volume_ml(volume.affine))
    findings += check_volumes(volumes, context.priors, case_id)
    context.findings.extend(findings)
    public = [f.public() for f in findings if f.severity is not Severity.INFO]
    return context.writer.write_case(
        CaseData(
            case_id=case_id,
            subject=subject,
            image=image,
            affine=volume.affine,
            labels=assembled.labels,
            contoured=tuple(assembled.contoured),
            volumes_ml=volumes,
            findings=tuple(public),
        )
    )


def _dataset(case: CaseInput, ref: MaskReference) -> Dataset:
    return case.datasets[ref.path]


def _write_report(
    path: Path, options: BuildOptions, records: Sequence[CaseRecord], findings: Sequence[Finding]
) -> Path:
    counts = {s.value: sum(1 for f in findings if f.severity is s) for s in Severity}
    report = {
        "site": options.site,
        "task": options.task,
        "format": options.format.value,
        "inputs": [str(p) for p in options.dicom],
        "site_folder": str(options.out),
        "cases": len(records),
        "findings_by_severity": counts,
        "policy": policy(),
        "findings": [f.private() for f in findings],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
