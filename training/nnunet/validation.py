"""Dice of federated nnU-Net weights on a site's validation cases, by nnU-Net's own predictor.

A site's held-out cases are never preprocessed for training. ``nnUNetPredictor``, set up from
the shared plans and the weights, predicts each from its raw images as nnU-Net predicts a test
case (its preprocessing, Gaussian sliding window with the trainer's test-time mirroring,
resampling back to the image grid), and the prediction is compared with the case's label map
for each federation label the case contours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.metrics import dice
from training.nnunet.federated_model import network_with, trainer_mirror_axes
from training.nnunet.federated_plans import IGNORE, SharedPlans
from training.nnunet.local_round import CONFIGURATION, MARGINAL_TRAINER


def _contoured(site: Mapping[str, object], case: str, local: Sequence[str]) -> set[str]:
    fedseg = site.get("fedseg")
    cases = fedseg.get("cases", {}) if isinstance(fedseg, dict) else {}
    return set(cases.get(case, {}).get("contoured", local))


def validation_dice(
    shared: SharedPlans,
    arrays: Mapping[str, np.ndarray],
    folder: Path,
    cases: Sequence[str],
    trainer: str = MARGINAL_TRAINER,
) -> dict[str, list[float]]:
    """Dice per federation label and case, over ``cases`` of a site's nnU-Net dataset folder.

    A label counts for a case when the case contours it and its label map holds it (as the
    U-Net's federated evaluation skips organs absent from a case's truth).

    Raises
    ------
    ValueError
        If the weights do not fit the plans, or a case has no image or label map.
    """
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from training.nnunet.predictor import cpu_predictor

    site = json.loads((folder / "dataset.json").read_text())
    ending = str(site["file_ending"])
    local = {k: int(v) for k, v in site["labels"].items() if k not in ("background", IGNORE)}
    federation = {str(k): int(v) for k, v in shared.dataset["labels"].items()}
    manager = PlansManager(json.loads(json.dumps(shared.plans)))
    network = network_with(shared, arrays, trainer)
    predictor = cpu_predictor(use_mirroring=True)
    predictor.manual_initialization(
        network,
        manager,
        manager.get_configuration(CONFIGURATION),
        [{k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}],
        shared.dataset,
        trainer,
        trainer_mirror_axes(shared, trainer),
    )
    reader = manager.image_reader_writer_class()
    scores: dict[str, list[float]] = {name: [] for name in local}
    for case in cases:
        images = sorted((folder / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
        truth_path = folder / "labelsTr" / f"{case}{ending}"
        if not images or not truth_path.is_file():
            raise ValueError(f"{folder}: validation case {case} lacks its images or label map")
        data, properties = reader.read_images([str(i) for i in images])
        predicted = predictor.predict_single_npy_array(data, properties, None, None, False)
        truth = reader.read_seg(str(truth_path))[0][0]
        for name in sorted(_contoured(site, case, list(local)) & set(local)):
            mask = truth == local[name]
            if name in federation and mask.any():
                scores[name].append(float(dice(predicted == federation[name], mask)))
    return scores
