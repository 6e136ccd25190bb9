"""The federation's nnU-Net model on the server: its first weights, and a trained-model folder.

:func:`initial_arrays` builds the plans' network with the trainer's own
``build_network_architecture`` (nnU-Net's He initialisation, seeded), so every site starts
round 1 from the same weights. :func:`write_model_folder` writes the aggregated weights as nnU-Net
writes a trained model (``plans.json``, ``dataset.json``, ``dataset_fingerprint.json`` and
``fold_0/checkpoint_final.pth`` with nnU-Net's checkpoint fields), which is what
``fedseg import nnunet`` (:func:`training.nnunet.importer.import_model`) reads. The federation
trains one model on every site's cases; it is written as fold 0 because the importer numbers
folds (nnU-Net's ``fold_all`` is not imported). The trainer named in the folder and checkpoint
defaults to ``nnUNetTrainerMarginal``, :class:`~training.nnunet.local_round.RoundSettings`'
default (its network is ``nnUNetTrainer``'s); pass the run's ``settings.trainer``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.nnunet.federated_plans import SharedPlans
from training.nnunet.local_round import CONFIGURATION, MARGINAL_TRAINER

FOLD = 0


def _network(shared: SharedPlans, trainer: str, deep_supervision: bool) -> object:
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from training.nnunet.network import find_trainer_class

    trainer_class = find_trainer_class(trainer)
    if trainer_class is None:
        raise ValueError(f"nnU-Net has no trainer {trainer!r}")
    manager = PlansManager(json.loads(json.dumps(shared.plans)))
    configuration = manager.get_configuration(CONFIGURATION)
    labels = manager.get_label_manager(shared.dataset)
    inputs = determine_num_input_channels(manager, configuration, shared.dataset)
    return trainer_class.build_network_architecture(
        manager, configuration, inputs, labels.num_segmentation_heads, deep_supervision
    )


def initial_arrays(
    shared: SharedPlans, seed: int, trainer: str = MARGINAL_TRAINER
) -> dict[str, np.ndarray]:
    """The first global weights: the trainer's network of the plans, initialised by nnU-Net."""
    import torch

    torch.manual_seed(seed)
    network = _network(shared, trainer, deep_supervision=True)
    state = network.state_dict()  # type: ignore[attr-defined]
    return {k: v.detach().cpu().numpy().copy() for k, v in state.items()}


def write_model_folder(
    shared: SharedPlans,
    arrays: Mapping[str, np.ndarray],
    root: Path,
    mirror_axes: Sequence[int],
    epochs: int,
    trainer: str = MARGINAL_TRAINER,
) -> Path:
    """Write ``arrays`` as nnU-Net's trained model folder under ``root``; returns the folder.

    Raises
    ------
    ValueError
        If ``arrays`` do not fit the plans' network.
    """
    import torch

    network = _network(shared, trainer, deep_supervision=True)
    state = network.state_dict()  # type: ignore[attr-defined]
    if set(state) != set(arrays):
        raise ValueError(
            f"the weights hold {len(arrays)} arrays, the plans' network {len(state)}: they were "
            "not trained with these plans"
        )
    weights = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()}
    network.load_state_dict(weights)  # type: ignore[attr-defined]
    plans_name = str(shared.plans["plans_name"])
    folder = root / shared.dataset_name / f"{trainer}__{plans_name}__{CONFIGURATION}"
    (folder / f"fold_{FOLD}").mkdir(parents=True, exist_ok=True)
    dataset = {k: v for k, v in shared.dataset.items() if k != "overwrite_image_reader_writer"}
    (folder / "plans.json").write_text(json.dumps(shared.plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    (folder / "dataset_fingerprint.json").write_text(json.dumps(shared.fingerprint, indent=2))
    checkpoint = {
        "network_weights": weights,
        "optimizer_state": None,
        "grad_scaler_state": None,
        "logging": {},
        "_best_ema": None,
        "current_epoch": epochs,
        "init_args": {
            "plans": shared.plans,
            "configuration": CONFIGURATION,
            "fold": FOLD,
            "dataset_json": dataset,
        },
        "trainer_name": trainer,
        "inference_allowed_mirroring_axes": tuple(int(a) for a in mirror_axes),
    }
    torch.save(checkpoint, folder / f"fold_{FOLD}" / "checkpoint_final.pth")
    return folder
