"""Training cases on disk: which image and which label files belong together.

Three layouts are read, each with the service's own readers (``read_volume`` for DICOM,
``read_nifti`` for NIfTI), so training sees exactly what inference will see:

- a *case folder* holding ``image.nii.gz`` or a DICOM series folder (``image/``, ``PET/image/``,
  ...) and a label map ``label.nii.gz`` / ``*mask*.nii.gz``;
- the IBSI/TCIA ``sts-pet`` layout (``ibsi_validation/{dicom,nifti}/STS_0NN``), whose PET is
  read from DICOM and whose mask from NIfTI;
- a site folder built by ``fedseg dataset build`` (``site.json``), whose index says which labels
  each case contoured: the others are unknown there, not background.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.dicom.volume import read_volume
from service.errors import ConfigurationError, MaskInputError
from service.nifti import read_nifti
from training.sitedata.layout import SiteIndex, is_site_folder

if TYPE_CHECKING:
    from training.tasks import Task


@dataclass(frozen=True)
class CaseSource:
    """Where one case's image and labels live."""

    case_id: str
    site: str
    image: Path
    labels: Path | None
    #: Class indices this case annotates; None means all of the task's labels.
    annotated: tuple[int, ...] | None = None


@dataclass
class Case:
    """One loaded case: image and integer labels on the image grid (LPS affine)."""

    case_id: str
    site: str
    image: np.ndarray
    affine: np.ndarray
    labels: np.ndarray | None
    annotated: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise ValueError(f"case {self.case_id}: image must be 3-D, got {self.image.shape}")
        if self.labels is not None and self.labels.shape != self.image.shape:
            raise MaskInputError(
                f"case {self.case_id}: labels {self.labels.shape} do not match image "
                f"{self.image.shape}; resample the mask onto the image grid first"
            )


def _read_image(path: Path, modality: str | None) -> tuple[np.ndarray, np.ndarray]:
    if path.is_dir():
        volume = read_volume(path, modality=modality)
        return volume.array, volume.affine
    array, affine = read_nifti(path)
    return np.asarray(array, dtype=np.float32), affine


def load_case(source: CaseSource, modality: str | None = None) -> Case:
    """Read a case's image (DICOM folder or NIfTI) and its NIfTI label map."""
    image, affine = _read_image(source.image, modality)
    labels = None
    if source.labels is not None:
        label_array, label_affine = read_nifti(source.labels)
        if not np.allclose(label_affine, affine, atol=1e-3):
            raise MaskInputError(
                f"{source.labels}: label grid differs from image grid of case {source.case_id}"
            )
        labels = np.rint(np.asarray(label_array)).astype(np.int16)
    return Case(source.case_id, source.site, image, affine, labels, source.annotated)


def _sts_sources(root: Path, site: str) -> list[CaseSource]:
    sources = []
    for nifti_dir in sorted((root / "ibsi_validation" / "nifti").glob("STS_*")):
        dicom_dir = root / "ibsi_validation" / "dicom" / nifti_dir.name / "PET" / "image"
        image = dicom_dir if dicom_dir.is_dir() else nifti_dir / "PET_image.nii.gz"
        sources.append(CaseSource(nifti_dir.name, site, image, nifti_dir / "PET_mask.nii.gz"))
    return sources


def site_sources(root: Path, task: Task | None = None) -> list[CaseSource]:
    """Cases of a built site folder, each with the labels it contoured.

    Raises
    ------
    ConfigurationError
        If the folder was built for another task than ``task``.
    """
    index = SiteIndex.load(root)
    if task is not None and index.task != task.name.value:
        raise ConfigurationError(
            f"{root} holds {index.task} cases, not {task.name.value}; build a site folder "
            f"for {task.name.value} with `fedseg dataset build --task {task.name.value}`"
        )
    return [
        CaseSource(
            case_id=case.case_id,
            site=index.site,
            image=root / case.image,
            labels=root / case.label,
            annotated=index.annotated(case),
        )
        for case in index.cases
    ]


def _case_folder(folder: Path, site: str) -> CaseSource | None:
    labels = next(
        (p for p in sorted(folder.glob("*.nii*")) if "label" in p.name or "mask" in p.name), None
    )
    image = next(
        (p for p in sorted(folder.glob("*.nii*")) if p != labels and "image" in p.name), None
    )
    if image is None:
        image = next((p for p in sorted(folder.iterdir()) if p.is_dir()), None)
    if image is None:
        return None
    return CaseSource(folder.name, site, image, labels)


def discover_cases(
    root: Path | str, site: str | None = None, task: Task | None = None
) -> list[CaseSource]:
    """Every case under ``root``; ``site`` defaults to the folder name.

    A ``fedseg phantoms`` dataset (or one of its site folders) needs ``task`` to choose the
    series and label file, and carries each site's annotated labels.

    Raises
    ------
    FileNotFoundError
        If ``root`` holds no case that this reader understands.
    """
    root = Path(root)
    site = site or root.name
    from training.data.phantom_cases import dataset_root, phantom_sources

    if is_site_folder(root):
        sources = site_sources(root, task)
    elif task is not None and dataset_root(root) is not None:
        sources = phantom_sources(root, task)
    elif (root / "ibsi_validation" / "nifti").is_dir():
        sources = _sts_sources(root, site)
    else:
        folders = (
            [root] if any(root.glob("*.nii*")) else sorted(p for p in root.iterdir() if p.is_dir())
        )
        sources = [s for f in folders if (s := _case_folder(f, site)) is not None]
    if not sources:
        raise FileNotFoundError(
            f"{root}: no training cases found; expected case folders with image and label "
            "NIfTI files, or the sts-pet layout (ibsi_validation/nifti/STS_*)"
        )
    return sources
