"""Cases of a ``fedseg phantoms`` dataset: per-site series, label files and annotated labels.

Layout (written by :mod:`training.phantoms`): ``ROOT/dataset.json`` describes the sites, each
site's annotated organs (partial labels) and each case's series and label files. A site folder
(``ROOT/site-01``) can be passed on its own: its cases are then the only ones read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.data.cases import CaseSource
from training.tasks import Task, TaskName

_SERIES = {TaskName.CT_ORGANS: "ct", TaskName.PET_LESION: "pt", TaskName.MR_TUMOUR: "mr"}


def dataset_root(path: Path) -> Path | None:
    """The phantom dataset that ``path`` is (or is a site of), or None."""
    for candidate in (path, path.parent):
        if (candidate / "dataset.json").is_file():
            return candidate
    return None


def _dataset_index(path: Path) -> tuple[Path, dict[str, Any]]:
    """The phantom dataset root holding ``path`` and its parsed ``dataset.json``."""
    root = dataset_root(path)
    if root is None:
        raise FileNotFoundError(f"{path}: no dataset.json here or in the parent folder")
    index: dict[str, Any] = json.loads((root / "dataset.json").read_text())
    return root, index


def phantom_sources(path: Path, task: Task) -> list[CaseSource]:
    """Cases of ``task`` under a phantom dataset or one of its site folders.

    ``annotated`` lists the class indices a site labels; organs a site does not annotate are left
    to the partial-label loss instead of being taught as background.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not part of a phantom dataset.
    """
    root, index = _dataset_index(path)
    series_key = _SERIES[task.name]
    sources = []
    for site in index["sites"]:
        if path != root and site["site_id"] != path.name:
            continue
        annotated = None
        if task.name is TaskName.CT_ORGANS:
            annotated = tuple(sorted(task.index_of(n) for n in site["annotated_organs"]))
        for case in site["cases"]:
            series = case["series"].get(series_key)
            labels = case["labels"].get(task.name.value)
            if series is None or labels is None:
                continue
            sources.append(
                CaseSource(
                    case_id=case["case_id"],
                    site=site["site_id"],
                    image=root / series,
                    labels=root / labels,
                    annotated=annotated,
                )
            )
    return sources


def lesion_classes(path: Path) -> dict[str, str]:
    """Case id → MR tumour class (``benign``/``malignant``) of a phantom dataset or site folder.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not part of a phantom dataset.
    """
    root, index = _dataset_index(path)
    return {
        case["case_id"]: case["mr_tumour_class"]
        for site in index["sites"]
        if path == root or site["site_id"] == path.name
        for case in site["cases"]
        if case.get("mr_tumour_class")
    }
