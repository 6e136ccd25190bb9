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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federation.experiments.nnunet_runs import ServedModel
from service.dicom.volume import Volume, read_volume
from service.nifti import read_nifti, write_nifti
from training.metrics import dice
from training.phantoms.config import ORGAN_VALUES, PhantomConfig, PhantomModality, Size
from training.phantoms.dataset import DatasetIndex, generate_dataset
from training.phantoms.rtstruct import write_phantom_rtstructs
from training.sitedata import BuildOptions, SiteFormat, build_site

TASK = "ct-organs"


def ct_phantoms(
    seed: int, sites: int, cases: int, partial: bool, absent_organ_rate: float = 0.0
) -> PhantomConfig:
    """Tiny CT-only phantoms (32 x 32 x 20 voxels of about 12 mm), as the U-Net experiments use."""
    return PhantomConfig(
        sites=sites,
        cases_per_site=cases,
        seed=seed,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        partial_labels=partial,
        absent_organ_rate=absent_organ_rate,
    )


def export_phantoms(
    config: PhantomConfig, out: Path, contoured: Sequence[str] | None = None
) -> DatasetIndex:
    """Every CT case of ``config`` under ``out`` as DICOM, with an RTSTRUCT per case.

    ``contoured`` (default: what each site annotates) limits the organs the centres contour.
    """
    index = generate_dataset(out, config)
    if contoured is not None:
        unknown = sorted(set(contoured) - set(ORGAN_VALUES))
        if unknown:
            raise ValueError(f"unknown organs {unknown}; use ct-organs names")
        keep = [ORGAN_VALUES[o] for o in contoured]
        for site in index.sites:
            for case in site.cases:
                path = out / case.labels["ct-organs"]
                organs, affine = read_nifti(path)
                write_nifti(
                    path, np.where(np.isin(organs, keep), organs, 0).astype(np.uint8), affine
                )
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
    return read_references(out, generate_dataset(out, config), sites, cases)


def read_references(
    root: Path, index: DatasetIndex, sites: Sequence[int], cases: Sequence[int]
) -> list[ReferenceCase]:
    """Cases ``cases`` of sites ``sites`` (1-based) of the phantom dataset at ``root``.

    Raises
    ------
    ValueError
        If the dataset has partial labels, or a label map does not lie on its CT's grid.
    """
    if index.partial_labels:
        raise ValueError(f"{root}: partially labelled phantoms cannot be reference cases")
    found = []
    for site in sites:
        entry = index.sites[site - 1]
        for number in cases:
            case = entry.cases[number - 1]
            volume = read_volume(root / case.series["ct"])
            organs, affine = read_nifti(root / case.labels["ct-organs"])
            if organs.shape != volume.shape or not np.allclose(affine, volume.affine, atol=1e-3):
                raise ValueError(
                    f"{root / case.labels['ct-organs']}: the label map is not on the grid of "
                    f"{root / case.series['ct']}"
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


def dice_scorer(
    cases: Sequence[ReferenceCase], organs: Sequence[str]
) -> Callable[[ServedModel], float]:
    """Mean Dice of a served model over ``organs`` x ``cases`` (a validation score)."""

    def score(model: ServedModel) -> float:
        values = []
        for case in cases:
            masks = model.masks(case.volume, organs)
            values += [dice(masks[o], case.truth(o)) for o in organs]
        return float(np.mean(values))

    return score
