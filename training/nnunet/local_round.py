"""One site's federated nnU-Net round: nnU-Net's own preprocessor and trainer on the site's cases.

A site receives the federation's :class:`~federation.nnunet.plans.SharedPlans` once and
:func:`prepare_site` lays out its cases for nnU-Net under a work folder:

- ``raw/<dataset>/``: the site's images (linked, not copied) and its label maps renumbered to
  the federation's label values. A case that lacks some of the federation's labels trains as
  :attr:`RoundSettings.partial_labels` says: ``"marginal"`` (the default) keeps its background
  0 and lists the missing labels in dataset.json for ``nnUNetTrainerMarginal``'s marginal loss
  (:mod:`training.nnunet.trainers`), where background and the missing labels are one class;
  ``"ignore"`` marks its background nnU-Net's ``ignore`` label (it may hold the missing organ),
  so those voxels give no supervision at all. Either way no loss calls an unlabelled organ
  background;
- ``preprocessed/<dataset>/``: the shared plans, dataset.json and pooled fingerprint, and each
  case preprocessed by nnU-Net's ``DefaultPreprocessor.run_case_save`` (in this process, one
  case at a time: nnU-Net's own ``run`` only adds a process pool around it).

Each round, :func:`local_round` builds the settings' trainer (``nnUNetTrainerMarginal``:
nnU-Net's ``nnUNetTrainer`` with the marginal loss; ``nnUNetTrainer`` for ``"ignore"``) on fold
``all`` (every local case trains), loads the global weights and runs the trainer's own epoch
steps (its data augmentation, deep-supervision loss, SGD with Nesterov momentum and poly
learning-rate schedule) for ``epochs`` epochs of ``iterations_per_epoch`` iterations. The
schedule runs over the whole federation: round ``r`` starts at epoch ``(r - 1) * epochs`` of
``rounds * epochs``, so the learning rate decays as it would in one nnU-Net training. nnU-Net's
validation epoch is skipped (the federation validates the aggregated model). The optimizer's
momentum starts from zero each round.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from service.nifti import read_nifti, write_nifti
from training.nnunet.environment import N_PROC_DA, nnunet_folders
from training.nnunet.federated_plans import CONFIGURATION, IGNORE, SharedPlans
from training.nnunet.trainer_defaults import INITIAL_LR, ITERATIONS_PER_EPOCH

logger = logging.getLogger(__name__)

#: nnU-Net's fold that trains on every case.
FOLD = "all"
TRAINER = "nnUNetTrainer"
#: fedseg's nnU-Net trainer with the partial-label loss (:mod:`training.nnunet.trainers`).
MARGINAL_TRAINER = "nnUNetTrainerMarginal"
#: How a case's uncontoured labels train (see the module docstring).
PartialLabels = Literal["marginal", "ignore"]


@dataclass(frozen=True)
class RoundSettings:
    """How long a site trains per round, and where in the federation's schedule it is.

    The defaults are nnU-Net's trainer's: one epoch of 250 iterations from learning rate 0.01.
    """

    epochs: int = 1
    iterations_per_epoch: int = ITERATIONS_PER_EPOCH
    rounds: int = 1
    initial_lr: float = INITIAL_LR
    seed: int = 0
    #: nnU-Net trainer class; empty: nnUNetTrainerMarginal for "marginal", else nnUNetTrainer.
    trainer: str = ""
    partial_labels: PartialLabels = "marginal"

    def __post_init__(self) -> None:
        if self.partial_labels not in get_args(PartialLabels):
            raise ValueError(
                f"partial_labels is {self.partial_labels!r}; choose one of "
                f"{', '.join(get_args(PartialLabels))}"
            )
        if not self.trainer:
            default = MARGINAL_TRAINER if self.partial_labels == "marginal" else TRAINER
            object.__setattr__(self, "trainer", default)
        if min(self.epochs, self.iterations_per_epoch, self.rounds) < 1:
            raise ValueError(f"epochs, iterations and rounds must be positive: {self}")
        if self.initial_lr <= 0:
            raise ValueError(f"the learning rate must be positive, got {self.initial_lr}")


@dataclass(frozen=True)
class PreparedSite:
    """A site's cases laid out and preprocessed for the federation's plans."""

    work: Path
    shared: SharedPlans
    cases: int
    #: The federation's labels this site contours (its selective-aggregation tasks).
    labels: frozenset[str]

    @property
    def dataset_path(self) -> Path:
        """The dataset.json the trainer reads (with the cases' missing labels, if marginal)."""
        return self.work / "preprocessed" / self.shared.dataset_name / "dataset.json"


@dataclass(frozen=True)
class LocalUpdate:
    """What a round returns: the trained state dict, the case count and the last mean loss."""

    arrays: dict[str, np.ndarray]
    cases: int
    loss: float
    #: The trainer's test-time mirroring axes (recorded in the model's checkpoint).
    mirror_axes: tuple[int, ...] = ()


def _site_labels(dataset: Mapping[str, Any]) -> dict[str, int]:
    return {
        name: int(value)
        for name, value in dataset["labels"].items()
        if name not in ("background", IGNORE)
    }


def case_ids(folder: Path) -> list[str]:
    """The case ids of an nnU-Net dataset folder (its label maps in ``labelsTr``), sorted."""
    ending = str(json.loads((folder / "dataset.json").read_text())["file_ending"])
    return sorted(p.name.removesuffix(ending) for p in (folder / "labelsTr").glob(f"*{ending}"))


def partial_labels_of(trainer: str) -> PartialLabels:
    """How a trainer needs cases lacking labels prepared: marginal for fedseg's trainers."""
    from training.nnunet.network import find_trainer_class
    from training.nnunet.trainers import nnUNetTrainerMarginal

    trainer_class = find_trainer_class(trainer)
    if trainer_class is None:
        raise ValueError(f"nnU-Net has no trainer {trainer!r}")
    return "marginal" if issubclass(trainer_class, nnUNetTrainerMarginal) else "ignore"


def prepare_site(
    folder: Path,
    shared: SharedPlans,
    work: Path,
    settings: RoundSettings | None = None,
    train_cases: Collection[str] | None = None,
) -> PreparedSite:
    """Lay out and preprocess a site's ``dataset build --format nnunet`` folder under ``work``.

    ``settings.partial_labels`` (default ``"marginal"``) says how cases lacking labels train.
    ``train_cases`` (ids as :func:`case_ids` lists them) restricts training to those cases;
    None trains on every case.

    Raises
    ------
    ValueError
        If the site contours a label the federation does not know, a case has no image, or
        ``train_cases`` names a case the folder lacks or is empty.
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from training.nnunet.trainers import with_missing_labels

    marginal = (settings or RoundSettings()).partial_labels == "marginal"
    site = json.loads((folder / "dataset.json").read_text())
    federation = _site_labels(shared.dataset)
    ignore = shared.dataset["labels"].get(IGNORE)
    local = _site_labels(site)
    unknown = sorted(set(local) - set(federation))
    if unknown:
        raise ValueError(
            f"{folder}: labels {unknown} are not in the federation's plans "
            f"({sorted(federation)}); ask the server to plan with them"
        )
    lookup = np.zeros(max([*local.values(), *site["labels"].values(), 0]) + 1, dtype=np.int16)
    for name, value in local.items():
        lookup[value] = federation[name]
    if IGNORE in site["labels"]:  # the site's partially contoured cases
        lookup[int(site["labels"][IGNORE])] = 0 if marginal else ignore
    missing: dict[str, list[str]] = {}
    cases = site.get("fedseg", {}).get("cases", {})
    name = shared.dataset_name
    raw = work / "raw" / name
    preprocessed = work / "preprocessed" / name
    ending = str(site["file_ending"])
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    labels = sorted((folder / "labelsTr").glob(f"*{ending}"))
    if train_cases is not None:
        missing_cases = sorted(set(train_cases) - {p.name.removesuffix(ending) for p in labels})
        if missing_cases or not train_cases:
            raise ValueError(
                f"{folder}: the cases to train must be some of the folder's; "
                f"{missing_cases or 'none given'}"
            )
        labels = [p for p in labels if p.name.removesuffix(ending) in train_cases]
    for label_path in labels:
        case = label_path.name.removesuffix(ending)
        images = sorted((folder / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
        if not images:
            raise ValueError(f"{folder}: case {case} has a label map and no image in imagesTr")
        for image in images:
            link = raw / "imagesTr" / image.name
            if not link.exists():
                os.symlink(image.resolve(), link)
        values, affine = read_nifti(label_path)
        out = lookup[np.asarray(values, dtype=np.intp)]
        contoured = set(cases.get(case, {}).get("contoured", local))
        if marginal:
            missing[case] = sorted(set(federation) - contoured)
        elif not set(federation) <= contoured:
            if ignore is None:
                raise ValueError(
                    f"{folder}: case {case} lacks labels {sorted(set(federation) - contoured)} "
                    "and the federation's plans have no ignore label"
                )
            out[np.asarray(values) == 0] = ignore
        write_nifti(raw / "labelsTr" / label_path.name, out.astype(np.uint8), affine)
    dataset = {**shared.dataset, "numTraining": len(labels)}
    if marginal:
        dataset = with_missing_labels(dataset, missing)
    (raw / "dataset.json").write_text(json.dumps(dataset))
    preprocessed.mkdir(parents=True, exist_ok=True)
    plans_name = str(shared.plans["plans_name"])
    (preprocessed / f"{plans_name}.json").write_text(json.dumps(shared.plans))
    (preprocessed / "dataset.json").write_text(json.dumps(dataset))
    (preprocessed / "dataset_fingerprint.json").write_text(json.dumps(shared.fingerprint))
    manager = PlansManager(json.loads(json.dumps(shared.plans)))
    configuration = manager.get_configuration(CONFIGURATION)
    target = preprocessed / configuration.data_identifier
    target.mkdir(exist_ok=True)
    preprocessor = DefaultPreprocessor(verbose=False)
    with nnunet_folders(work):
        for label_path in labels:
            case = label_path.name.removesuffix(ending)
            images = sorted((raw / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{ending}"))
            preprocessor.run_case_save(
                str(target / case),
                [str(i) for i in images],
                str(raw / "labelsTr" / label_path.name),
                manager,
                configuration,
                dataset,
            )
    logger.info("prepared %d cases for %s", len(labels), name)
    return PreparedSite(work, shared, len(labels), frozenset(local))


def local_round(
    site: PreparedSite,
    global_arrays: Mapping[str, np.ndarray] | None,
    settings: RoundSettings,
    server_round: int,
) -> LocalUpdate:
    """Train nnU-Net's trainer from the global weights for one round; return the new weights.

    ``global_arrays`` None starts from nnU-Net's own initialisation (seeded by ``settings``).

    Raises
    ------
    ValueError
        If ``server_round`` lies outside ``1..settings.rounds`` or the global weights do not
        fit the plans' network.
    """
    import torch

    from training.nnunet.network import find_trainer_class
    from training.nnunet.trainers import missing_labels, nnUNetTrainerMarginal

    if not 1 <= server_round <= settings.rounds:
        raise ValueError(f"round {server_round} is outside 1..{settings.rounds}")
    trainer_class = find_trainer_class(settings.trainer)
    if trainer_class is None:
        raise ValueError(f"nnU-Net has no trainer {settings.trainer!r}")
    dataset = json.loads(site.dataset_path.read_text())
    if missing_labels(dataset) and not issubclass(trainer_class, nnUNetTrainerMarginal):
        raise ValueError(
            f"{site.dataset_path} lists cases with missing labels (prepared for the marginal "
            f"loss), but trainer {settings.trainer} has nnU-Net's loss, which would call their "
            f"organs background: train with {MARGINAL_TRAINER} or prepare with "
            "partial_labels='ignore'"
        )
    torch.manual_seed(settings.seed + server_round)
    # nnU-Net's augmentation draws from numpy's global generator
    np.random.seed(settings.seed + server_round)
    plans = json.loads(json.dumps(site.shared.plans))
    # augmentation in this process (0 workers)
    with nnunet_folders(site.work, {N_PROC_DA: "0"}):
        trainer = trainer_class(
            {**plans, "continue_training": False},
            CONFIGURATION,
            FOLD,
            dataset,
            torch.device("cpu"),
        )
        trainer.num_epochs = settings.rounds * settings.epochs
        trainer.num_iterations_per_epoch = settings.iterations_per_epoch
        trainer.initial_lr = settings.initial_lr
        trainer.save_every = trainer.num_epochs + 1  # no periodic checkpoint
        trainer.on_train_start()
        network = trainer.network
        if global_arrays is not None:
            state = network.state_dict()
            if set(state) != set(global_arrays):
                raise ValueError(
                    f"the global weights hold {len(global_arrays)} arrays, the plans' network "
                    f"{len(state)}; the server and the site use different plans"
                )
            network.load_state_dict(
                {k: torch.from_numpy(np.array(v, copy=True)) for k, v in global_arrays.items()}
            )
        trainer.current_epoch = (server_round - 1) * settings.epochs
        loss = float("nan")
        for _ in range(settings.epochs):
            trainer.on_epoch_start()
            trainer.on_train_epoch_start()
            outputs = [
                trainer.train_step(next(trainer.dataloader_train))
                for _ in range(settings.iterations_per_epoch)
            ]
            trainer.on_train_epoch_end(outputs)
            loss = float(np.mean([o["loss"] for o in outputs]))
            trainer.current_epoch += 1
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}
        mirror_axes = tuple(int(a) for a in trainer.inference_allowed_mirroring_axes or ())
    logger.info(
        "round %d: %d epochs x %d iterations on %d cases, loss %.4f",
        server_round,
        settings.epochs,
        settings.iterations_per_epoch,
        site.cases,
        loss,
    )
    return LocalUpdate(arrays, site.cases, loss, mirror_axes)
