"""Phantom CT centres for the nnU-Net experiments, as a centre's PACS would hand them over.

:func:`export_phantoms` writes the phantom cases as DICOM CT series with an RTSTRUCT each
(:mod:`training.phantoms.rtstruct`: every site spells its ROI names its own way and contours only
the organs it annotates). :func:`build_folder` turns a centre's exports into its nnU-Net site
folder with ``fedseg dataset build --format nnunet`` (:func:`training.sitedata.build_site`),
which maps the ROI names back to ``ct-organs`` labels and records each case's contoured labels.
:func:`reference_cases` reads held-out cases as the service reads a study (the DICOM series)
with their full organ label maps on the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.dicom.volume import Volume, read_volume
from service.nifti import read_nifti
from training.phantoms.config import ORGAN_VALUES, PhantomConfig
from training.phantoms.dataset import DatasetIndex, generate_dataset
from training.phantoms.rtstruct import write_phantom_rtstructs
from training.sitedata import BuildOptions, SiteFormat, build_site

TASK = "ct-organs"


def export_phantoms(config: PhantomConfig, out: Path) -> DatasetIndex:
    """Every CT case of ``config`` under ``out`` as DICOM, with an RTSTRUCT per case."""
    index = generate_dataset(out, config)
    write_phantom_rtstructs(out)
    return index


def case_folders(root: Path, index: DatasetIndex, site: int, cases: Sequence[int]) -> list[Path]:
    """The export folders of cases ``cases`` (1-based) of site ``site`` (1-based)."""
    entries = index.sites[site - 1].cases
    return [root / entries[number - 1].path for number in cases]


def build_folder(exports: Sequence[Path], out: Path, site: str) -> Path:
    """``dataset build --format nnunet`` of DICOM ``exports`` into site folder ``out``.

    Raises
    ------
    RuntimeError
        If the build left a case out (its report, beside the folder, says why).
    """
    result = build_site(
        BuildOptions(dicom=tuple(exports), task=TASK, out=out, site=site, format=SiteFormat.NNUNET)
    )
    if len(result.records) != len(exports):
        raise RuntimeError(
            f"{site}: dataset build kept {len(result.records)} of {len(exports)} cases; "
            f"see {result.report}"
        )
    return out


@dataclass(frozen=True)
class ReferenceCase:
    """A held-out case: the CT as the service reads it and every organ's reference mask."""

    case_id: str
    #: 1-based phantom site (scanner) number.
    site: int
    patient_position: str
    absent_organs: tuple[str, ...]
    volume: Volume
    #: ``ct-organs`` label map on the volume's grid (every organ, whatever the site annotates).
    organs: np.ndarray

    def truth(self, organ: str) -> np.ndarray:
        """The reference mask of ``organ``."""
        return self.organs == ORGAN_VALUES[organ]


def reference_cases(
    config: PhantomConfig, out: Path, sites: Sequence[int], cases: Sequence[int]
) -> list[ReferenceCase]:
    """Cases ``cases`` of phantom sites ``sites`` of ``config``, written under ``out``, read back.

    ``config`` must not use partial labels: a reference mask holds every organ.

    Raises
    ------
    ValueError
        If ``config`` has partial labels, or a label map does not lie on its CT's grid.
    """
    if config.partial_labels:
        raise ValueError("reference cases need every organ: use partial_labels=False")
    index = generate_dataset(out, config)
    found = []
    for site in sites:
        entry = index.sites[site - 1]
        for number in cases:
            case = entry.cases[number - 1]
            volume = read_volume(out / case.series["ct"])
            organs, affine = read_nifti(out / case.labels["ct-organs"])
            if organs.shape != volume.shape or not np.allclose(affine, volume.affine, atol=1e-3):
                raise ValueError(
                    f"{out / case.labels['ct-organs']}: the label map is not on the grid of "
                    f"{out / case.series['ct']}"
                )
            found.append(
                ReferenceCase(
                    case.case_id,
                    site,
                    str(entry.profile["patient_position"]),
                    tuple(case.absent_organs),
                    volume,
                    np.asarray(organs, dtype=np.int16),
                )
            )
    return found
