"""What nnU-Net's fingerprint reads from each case of a site's nnU-Net dataset folder.

nnU-Net plans a network from a dataset *fingerprint*: every case's spacing and shape after
cropping to the non-zero region, and intensity statistics of a fixed-size random sample of
foreground voxels per case and channel (``DatasetFingerprintExtractor``: 10^8 samples over the
whole dataset, with replacement, from ``RandomState(1234)``). This module runs nnU-Net's own
per-case analysis (``DatasetFingerprintExtractor.analyze_case``) on a folder written by
``fedseg dataset build --format nnunet``, with the per-case sample count of the *pooled*
dataset, so a site draws exactly the samples nnU-Net would draw from its cases in the pooled
data. What leaves the site is decided by the caller (``federation.nnunet.fingerprint``
reduces the cases to histograms and sums).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Foreground voxels nnU-Net samples for the intensity statistics over a whole dataset.
NNUNET_FOREGROUND_SAMPLES = 10e7


@dataclass(frozen=True)
class CaseAnalysis:
    """nnU-Net's view of one case (held at the site; never sent as such)."""

    spacing: tuple[float, ...]
    shape_after_crop: tuple[int, ...]
    relative_size_after_cropping: float
    #: Sampled foreground intensities, one array per channel.
    intensities: tuple[np.ndarray, ...]


def samples_per_case(total_cases: int, total_samples: float = NNUNET_FOREGROUND_SAMPLES) -> int:
    """Foreground samples per case and channel, as nnU-Net divides them over the dataset.

    Raises
    ------
    ValueError
        If ``total_cases`` is not positive.
    """
    if total_cases < 1:
        raise ValueError(f"the pooled dataset needs at least one case, got {total_cases}")
    return int(total_samples // total_cases)


def _dataset_json(folder: Path) -> dict[str, object]:
    path = Path(folder) / "dataset.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(
            f"{path}: no readable dataset.json; build the site folder with "
            "`fedseg dataset build --format nnunet`"
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: dataset.json must hold an object")
    return data


def training_files(folder: Path, ending: str) -> dict[str, dict[str, Any]]:
    """Images and label map of every case in ``imagesTr``/``labelsTr``, by case id.

    nnU-Net's ``get_filenames_of_train_images_and_targets`` lists the same files in the same
    order, but through a forked pool of 12 processes: forked from a Flower ClientApp, each of
    them inherits its exit handlers and, when the pool is closed, reports the ClientApp's task
    as stopped, and the reply is refused.
    """
    pattern = re.compile(r"(.+)_\d{4}" + re.escape(ending))
    found: dict[str, list[str]] = {}
    for path in sorted((folder / "imagesTr").iterdir()):
        if match := pattern.fullmatch(path.name):
            found.setdefault(match.group(1), []).append(str(path))
    labels = folder / "labelsTr"
    return {
        case: {"images": found[case], "label": str(labels / f"{case}{ending}")}
        for case in sorted(found)
    }


def analyse_cases(folder: Path, per_case_samples: int) -> Iterator[CaseAnalysis]:
    """nnU-Net's fingerprint analysis of every training case of an nnU-Net dataset folder.

    Parameters
    ----------
    folder
        An nnU-Net raw dataset (``dataset.json``, ``imagesTr``, ``labelsTr``).
    per_case_samples
        Foreground samples per case and channel (:func:`samples_per_case` of the pooled count).
    """
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )
    from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

    dataset_json = _dataset_json(folder)
    cases = training_files(folder, str(dataset_json["file_ending"]))
    if not cases:
        raise FileNotFoundError(f"{folder}: the nnU-Net dataset holds no training cases")
    first = next(iter(cases.values()))["images"][0]
    reader = determine_reader_writer_from_dataset_json(dataset_json, first)
    for key in sorted(cases):
        shape, spacing, intensities, _, relative = DatasetFingerprintExtractor.analyze_case(
            cases[key]["images"], cases[key]["label"], reader, per_case_samples
        )
        yield CaseAnalysis(
            spacing=tuple(float(s) for s in spacing),
            shape_after_crop=tuple(int(s) for s in shape),
            relative_size_after_cropping=float(relative),
            intensities=tuple(np.asarray(i, dtype=np.float64) for i in intensities),
        )
