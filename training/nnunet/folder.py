"""A trained nnU-Net v2 model folder on disk: plans, dataset.json, fold checkpoints, postprocessing.

nnU-Net writes ``nnUNet_results/DatasetNNN_Name/TRAINER__PLANS__CONFIGURATION/`` with
``plans.json``, ``dataset.json`` and ``fold_N/checkpoint_final.pth`` (and ``checkpoint_best.pth``);
TotalSegmentator ships its weights in the same layout. :func:`open_model_folder` accepts either
that trainer folder or the dataset folder above it (when it holds one trainer folder of the
configuration), reads the JSON files, and checks everything the importer relies on, so each
refusal names the file and the field.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from service.errors import ModelBundleError

logger = logging.getLogger(__name__)

PLANS_FILE = "plans.json"
DATASET_FILE = "dataset.json"
POSTPROCESSING_FILE = "postprocessing.json"
#: ``TRAINER__PLANS__CONFIGURATION``, nnU-Net's name for a trained model folder.
_TRAINER_FOLDER = re.compile(r"^(?P<trainer>[^_].*?)__(?P<plans>.+?)__(?P<configuration>[^_].*)$")
_FOLD = re.compile(r"^fold_(\d+)$")


class CheckpointChoice(StrEnum):
    """Which of nnU-Net's checkpoints to import."""

    FINAL = "final"  # checkpoint_final.pth: the end of training, what nnU-Net predicts with
    BEST = "best"  # checkpoint_best.pth: the best pseudo-Dice EMA during training

    @property
    def file_name(self) -> str:
        """The checkpoint's file name in a fold folder."""
        return f"checkpoint_{self.value}.pth"


@dataclass(frozen=True)
class ModelFolder:
    """The parts of a trained nnU-Net model folder the importer reads.

    ``plans`` is ``plans.json`` as written (old or current format), ``dataset`` is
    ``dataset.json``; ``checkpoints`` maps fold numbers to their checkpoint files.
    """

    path: Path
    trainer_folder_name: str
    configuration: str
    plans: dict[str, Any]
    dataset: dict[str, Any]
    checkpoints: dict[int, Path]
    postprocessing: dict[str, Any] | None
    postprocessing_path: Path | None

    @property
    def plans_path(self) -> Path:
        """``plans.json``."""
        return self.path / PLANS_FILE

    @property
    def dataset_path(self) -> Path:
        """``dataset.json``."""
        return self.path / DATASET_FILE


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``, or an error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelBundleError(f"{path}: missing ({what})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{path}: not readable JSON ({what}): {exc}") from exc
    if not isinstance(data, dict):
        raise ModelBundleError(f"{path}: expected a JSON object ({what})")
    return data


def _trainer_folder(folder: Path, configuration: str | None) -> Path:
    """``folder`` when it holds plans.json, else its one trainer folder of the configuration."""
    if not folder.is_dir():
        raise ModelBundleError(
            f"{folder}: no such folder (expected a trained nnU-Net model folder)"
        )
    if (folder / PLANS_FILE).is_file():
        return folder
    candidates = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        match = _TRAINER_FOLDER.match(child.name)
        wanted = match is not None and configuration in (None, match["configuration"])
        if wanted and (child / PLANS_FILE).is_file():
            candidates.append(child)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelBundleError(
            f"{folder}: not an nnU-Net model folder: no {PLANS_FILE} here and no "
            "TRAINER__PLANS__CONFIGURATION folder with one below (pass the folder nnU-Net wrote "
            "to nnUNet_results/DatasetNNN_Name/TRAINER__PLANS__CONFIGURATION)"
        )
    names = ", ".join(c.name for c in candidates)
    raise ModelBundleError(
        f"{folder}: holds several trained models ({names}); pass one of them, or choose with "
        "--configuration"
    )


def _configuration(path: Path, plans: dict[str, Any], requested: str | None) -> str:
    match = _TRAINER_FOLDER.match(path.name)
    from_name = match["configuration"] if match else None
    configuration = requested or from_name or "3d_fullres"
    if requested and from_name and requested != from_name:
        raise ModelBundleError(
            f"{path}: the folder holds configuration {from_name!r}, not the requested {requested!r}"
        )
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict) or configuration not in configurations:
        known = ", ".join(configurations) if isinstance(configurations, dict) else "none"
        raise ModelBundleError(
            f"{path / PLANS_FILE}: configurations has no {configuration!r} (it has {known})"
        )
    if "cascade" in configuration:
        raise ModelBundleError(
            f"{path / PLANS_FILE}: configuration {configuration!r} is a cascade stage; it needs "
            "the low-resolution stage's segmentation as an extra input, which fedseg does not "
            "run. Import the 3d_fullres (or 3d_lowres) model instead"
        )
    return configuration


def _checkpoints(
    path: Path, folds: Sequence[int] | None, checkpoint: CheckpointChoice
) -> dict[int, Path]:
    present = {
        int(m.group(1)): p / checkpoint.file_name
        for p in sorted(path.iterdir())
        if p.is_dir() and (m := _FOLD.match(p.name)) and (p / checkpoint.file_name).is_file()
    }
    if folds is None:
        if not present and (path / "fold_all" / checkpoint.file_name).is_file():
            raise ModelBundleError(
                f"{path / 'fold_all' / checkpoint.file_name}: a model trained on all cases "
                "(fold 'all') is not supported yet (the recipe numbers folds); train or pass a "
                "numbered fold"
            )
        if not present:
            other = "final" if checkpoint is CheckpointChoice.BEST else "best"
            raise ModelBundleError(
                f"{path}: no fold_N/{checkpoint.file_name} (the model was not trained to the "
                f"end, or pass --checkpoint {other})"
            )
        return dict(sorted(present.items()))
    chosen: dict[int, Path] = {}
    for fold in folds:
        file = path / f"fold_{fold}" / checkpoint.file_name
        if fold not in present:
            have = ", ".join(str(f) for f in sorted(present)) or "none"
            raise ModelBundleError(
                f"{file}: missing; fold {fold} was requested but the folder has "
                f"{checkpoint.file_name} for fold(s) {have}"
            )
        chosen[fold] = file
    return chosen


def _postprocessing(path: Path, folds: Sequence[int]) -> tuple[dict[str, Any] | None, Path | None]:
    """``postprocessing.json`` of the folder, or of the cross-validation of exactly these folds."""
    candidates = [path / POSTPROCESSING_FILE]
    suffix = "_".join(str(f) for f in sorted(folds))
    candidates.append(path / f"crossval_results_folds_{suffix}" / POSTPROCESSING_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return read_json(candidate, "nnU-Net's postprocessing rules"), candidate
    return None, None


def open_model_folder(
    folder: Path,
    configuration: str | None = None,
    folds: Sequence[int] | None = None,
    checkpoint: CheckpointChoice = CheckpointChoice.FINAL,
) -> ModelFolder:
    """Read a trained nnU-Net model folder (see the module docstring).

    Raises
    ------
    ModelBundleError
        If it is not an nnU-Net model folder, a file is missing or unreadable, the configuration
        is absent or a cascade stage, or a requested fold has no checkpoint.
    """
    path = _trainer_folder(folder, configuration)
    plans = read_json(path / PLANS_FILE, "nnU-Net plans")
    dataset = read_json(path / DATASET_FILE, "nnU-Net dataset description")
    for key in ("labels",):
        if key not in dataset:
            raise ModelBundleError(f"{path / DATASET_FILE}: no {key!r} field")
    if "channel_names" not in dataset and "modality" not in dataset:
        raise ModelBundleError(f"{path / DATASET_FILE}: no 'channel_names' field")
    name = _configuration(path, plans, configuration)
    chosen = _checkpoints(path, folds, checkpoint)
    postprocessing, pp_path = _postprocessing(path, list(chosen))
    match = _TRAINER_FOLDER.match(path.name)
    return ModelFolder(
        path=path,
        trainer_folder_name=path.name if match else "",
        configuration=name,
        plans=plans,
        dataset=dataset,
        checkpoints=chosen,
        postprocessing=postprocessing,
        postprocessing_path=pp_path,
    )
