"""Phantom CT cases as a planning system would export them: an RTSTRUCT per case.

Each site spells its ROI names its own way (``Lung_L``, ``LUNG LT``, ``L Lung``, ``Lung-Left``),
as real centres do, so ``fedseg dataset build`` has to map them back to the labels. The organs
are the ones the site annotates (partial labels); a ``BODY`` outline is added everywhere, as
planning systems do, and is not a label of ``ct-organs``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.dicom.volume import read_volume
from service.labels.registry import LabelEntry, get_table
from service.nifti import read_nifti
from service.regions import Region, RegionSet
from service.results.provenance import AlgorithmIdentity
from service.results.rtstruct_writer import write_rtstruct
from training.phantoms.dataset import DatasetIndex

RTSTRUCT_FOLDER = "rtstruct"
_SIDE_WORDS = {"L": ("LT", "L", "Left"), "R": ("RT", "R", "Right")}


def _parts(entry: LabelEntry) -> tuple[list[str], str | None]:
    """The words of a label's TG-263 name and its side: ``Lung_L`` → (["Lung"], "L")."""
    name = entry.tg263_name or entry.name
    base, _, side = name.rpartition("_")
    if side in _SIDE_WORDS and base:
        name = base
    else:
        side = ""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").split(), side or None


def _tg263(words: list[str], side: str | None) -> str:
    return "".join(words) + (f"_{side}" if side else "")


def _upper_words(words: list[str], side: str | None) -> str:
    return " ".join(w.upper() for w in words) + (f" {_SIDE_WORDS[side][0]}" if side else "")


def _side_first(words: list[str], side: str | None) -> str:
    return (f"{_SIDE_WORDS[side][1]} " if side else "") + " ".join(words)


def _hyphen_words(words: list[str], side: str | None) -> str:
    return "-".join(words) + (f"-{_SIDE_WORDS[side][2]}" if side else "")


#: How each site spells its ROI names, by site number (cycled).
SPELLINGS: tuple[Callable[[list[str], str | None], str], ...] = (
    _tg263,
    _upper_words,
    _side_first,
    _hyphen_words,
)


def roi_name(entry: LabelEntry, site: int) -> str:
    """The ROI name site ``site`` (1-based) gives label ``entry``."""
    words, side = _parts(entry)
    return SPELLINGS[(site - 1) % len(SPELLINGS)](words, side)


def write_phantom_rtstructs(root: Path) -> list[Path]:
    """Write ``<case>/rtstruct/RS.dcm`` for every CT case of the phantom dataset at ``root``."""
    index = DatasetIndex.load(root)
    table = get_table("ct-organs")
    algorithm = AlgorithmIdentity("fedseg-phantoms", "1")
    written = []
    for site_number, site in enumerate(index.sites, start=1):
        for case in site.cases:
            if "ct" not in case.series:
                continue
            volume = read_volume(root / case.series["ct"])
            organs, _ = read_nifti(root / case.labels["ct-organs"])
            body, _ = read_nifti(root / case.labels["body"])
            regions = [
                Region(roi_name(entry, site_number), entry.number, organs == entry.number, entry)
                for entry in table.labels
                if np.any(organs == entry.number)
            ]
            regions.append(Region("BODY", len(table.labels) + 1, np.asarray(body) > 0))
            structures = RegionSet(regions, volume.shape, volume.affine)
            result = write_rtstruct(volume, structures, table, algorithm)
            # The writer names coded ROIs by TG-263; a planning system keeps what was typed.
            typed = {result.roi_numbers[r.number]: r.name for r in regions}
            dataset = result.dataset
            for roi in dataset.StructureSetROISequence:
                roi.ROIName = typed[int(roi.ROINumber)]
            path = root / case.path / RTSTRUCT_FOLDER / "RS.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset.save_as(path, enforce_file_format=True)
            written.append(path)
    return written
