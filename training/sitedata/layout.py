"""A built site folder: one folder of NIfTI files per case and the site index, ``site.json``.

Layout::

    SITE/site.json                        task, labels, policy, cases (no identifiers)
    SITE/cases/<case>/image.nii.gz        the image (CT in HU, PET in SUVbw, MR as stored)
    SITE/cases/<case>/label.nii.gz        task label numbers; 0 = background *or unknown*
    SITE/cases/<case>/label.json          what each value means and which labels were contoured

Arrays are in fedseg's axis convention (see :mod:`service.results.nifti_labels`). A label a case
does not list as ``contoured`` is unknown there, not background: the readers turn ``contoured``
into the partial-label supervision of training and of the federation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from service.dicom.geometry import voxel_spacing
from service.errors import ConfigurationError
from service.labels.registry import LabelTable
from service.nifti import write_nifti
from service.results.nifti_labels import LabelName, write_label_nifti

SITE_INDEX = "site.json"
FORMAT = "fedseg-site"
FORMAT_VERSION = 1
UNKNOWN_POLICY = "a label not listed in a case's 'contoured' is unknown there, not background"


@dataclass(frozen=True)
class CaseRecord:
    """One case of a site index."""

    case_id: str
    subject: str
    image: str  # relative to the site folder
    label: str
    contoured: tuple[str, ...]
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    volumes_ml: Mapping[str, float]
    findings: tuple[Mapping[str, str], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CaseRecord:
        """Inverse of :func:`dataclasses.asdict`."""
        return cls(
            case_id=str(data["case_id"]),
            subject=str(data["subject"]),
            image=str(data["image"]),
            label=str(data["label"]),
            contoured=tuple(data["contoured"]),  # type: ignore[arg-type]
            shape=tuple(data["shape"]),  # type: ignore[arg-type]
            spacing_mm=tuple(data["spacing_mm"]),  # type: ignore[arg-type]
            volumes_ml=dict(data.get("volumes_ml", {})),  # type: ignore[call-overload]
            findings=tuple(data.get("findings", ())),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class SiteIndex:
    """``site.json``: what a built site folder holds."""

    site: str
    task: str
    modality: str
    units: str
    labels: Mapping[str, str]  # label number (as text) → label name
    cases: tuple[CaseRecord, ...]
    policy: Mapping[str, str] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def annotated(self, case: CaseRecord) -> tuple[int, ...]:
        """Label numbers a case contoured (the others are unknown for it)."""
        numbers = {name: int(number) for number, name in self.labels.items()}
        return tuple(sorted(numbers[name] for name in case.contoured))

    def save(self, folder: Path) -> Path:
        """Write ``site.json`` into ``folder``."""
        path = folder / SITE_INDEX
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> SiteIndex:
        """Read the index of a built site folder.

        Raises
        ------
        ConfigurationError
            If there is no index or it is of another format or version.
        """
        path = folder / SITE_INDEX
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"{folder}: no {SITE_INDEX}; build the site with `fedseg dataset build`"
            ) from exc
        except ValueError as exc:
            raise ConfigurationError(f"{path} is not valid JSON: {exc}") from exc
        if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
            raise ConfigurationError(
                f"{path}: format {data.get('format')!r} version {data.get('format_version')!r} "
                f"is not {FORMAT} {FORMAT_VERSION}; rebuild the site with this fedseg"
            )
        cases = tuple(CaseRecord.from_dict(c) for c in data["cases"])
        fields = {k: data[k] for k in ("site", "task", "modality", "units", "labels", "policy")}
        return cls(**fields, cases=cases)


def is_site_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a built site index."""
    return (folder / SITE_INDEX).is_file()


def image_array(array: np.ndarray, modality: str) -> np.ndarray:
    """The image as stored: CT in whole HU as int16 when it is whole, else float32."""
    limits = np.iinfo(np.int16)
    whole = modality == "CT" and array.size and np.all(array == np.round(array))
    if whole and array.min() >= limits.min and array.max() <= limits.max:
        return array.astype(np.int16)
    return array.astype(np.float32)


def label_names(table: LabelTable) -> dict[int, LabelName]:
    """Every label of ``table`` by its number."""
    return {e.number: LabelName(e.name, e) for e in table.labels}


@dataclass(frozen=True)
class CaseData:
    """One built case, before a writer lays it out: arrays, what was contoured, the findings."""

    case_id: str
    subject: str
    image: np.ndarray
    affine: np.ndarray
    labels: np.ndarray  # task label numbers
    contoured: tuple[str, ...]
    volumes_ml: Mapping[str, float]
    findings: tuple[Mapping[str, str], ...] = ()

    def record(self, folder: Path, image: Path, label: Path) -> CaseRecord:
        """The index record of this case, written as ``image`` and ``label`` under ``folder``."""
        spacing = voxel_spacing(self.affine)
        shape = self.labels.shape
        return CaseRecord(
            case_id=self.case_id,
            subject=self.subject,
            image=image.relative_to(folder).as_posix(),
            label=label.relative_to(folder).as_posix(),
            contoured=self.contoured,
            shape=(int(shape[0]), int(shape[1]), int(shape[2])),
            spacing_mm=(round(spacing[0], 4), round(spacing[1], 4), round(spacing[2], 4)),
            volumes_ml=dict(self.volumes_ml),
            findings=self.findings,
        )


@dataclass
class FedsegWriter:
    """Writes cases in the fedseg site layout and the index at the end."""

    folder: Path
    table: LabelTable
    site: str
    modality: str
    units: str

    def write_case(self, case: CaseData) -> CaseRecord:
        """Write one case's files; returns its index record."""
        case_dir = self.folder / "cases" / case.case_id
        image_path = write_nifti(
            case_dir / "image.nii.gz", image_array(case.image, self.modality), case.affine
        )
        extra = {
            "task": self.table.task,
            "contoured": list(case.contoured),
            "unknown": UNKNOWN_POLICY,
        }
        label_path, _ = write_label_nifti(
            case_dir / "label.nii.gz", case.labels, case.affine, label_names(self.table), extra
        )
        return case.record(self.folder, image_path, label_path)

    def finish(self, records: Sequence[CaseRecord], policy: Mapping[str, str]) -> Path:
        """Write ``site.json``."""
        index = SiteIndex(
            site=self.site,
            task=self.table.task,
            modality=self.modality,
            units=self.units,
            labels={
                str(e.number): e.name for e in sorted(self.table.labels, key=lambda e: e.number)
            },
            cases=tuple(records),
            policy=dict(policy),
        )
        return index.save(self.folder)
