"""``fedseg train --task T --data DIR... --out RUN``: local or centralised training.

One ``--data`` folder trains a local model; several act as the sites of a centralised run (their
cases are pooled). Torch and MONAI are imported only when the command runs, so ``fedseg --help``
works without them.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.errors import ConfigurationError
from training.tasks import TASKS

if TYPE_CHECKING:
    from training.engine import TrainConfig

logger = logging.getLogger(__name__)

#: ``--task`` value of the lesion classification head (the model's ``lesion-class`` head).
LESION_CLASS = "lesion-class"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a segmentation model on one site (local) or several (centralised)",
        description="Train a task head; resumes when RUN already holds last.pt.",
    )
    parser.add_argument(
        "--task",
        required=True,
        choices=[*(t.value for t in TASKS), LESION_CLASS],
        help=f"segmentation task, or {LESION_CLASS} (benign vs malignant phantom MR tumours)",
    )
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="site folders")
    parser.add_argument("--out", required=True, type=Path, help="run folder")
    parser.add_argument(
        "--steps", type=int, default=2000, help="optimiser steps in all (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=2, help="patches per step (default: %(default)s)"
    )
    parser.add_argument(
        "--lr", type=float, default=3e-3, help="initial learning rate (default: %(default)s)"
    )
    parser.add_argument(
        "--validate-every",
        type=int,
        default=100,
        help="steps between validations; the best one is kept (default: %(default)s)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.2, help="per site, by case")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, sampling and weights (default: 0)"
    )
    parser.add_argument(
        "--deep-supervision",
        action="store_true",
        help="also supervise the coarser decoder levels (nnU-Net style; the bundle is unchanged)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def _split(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    import numpy as np

    if not 0 <= fraction < 1:
        raise ConfigurationError(f"--val-fraction must lie in [0, 1), got {fraction}")
    order = list(np.random.default_rng(seed).permutation(sorted(ids)))
    n_val = round(fraction * len(order)) if len(order) > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def annotated_classes(num_classes: int, annotated: tuple[int, ...] | None) -> np.ndarray:
    """Boolean vector over a task's classes: True where the case's site labels the class.

    Index 0 (background) is always False: it is implied, never listed.
    """
    mask = np.zeros(num_classes, dtype=bool)
    mask[1:] = annotated is None
    if annotated is not None:
        mask[list(annotated)] = True
    return mask


def _config(args: argparse.Namespace) -> TrainConfig:
    from training.engine import TrainConfig

    return TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        validate_every=args.validate_every,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )


def run_classifier(args: argparse.Namespace) -> int:
    """Train the lesion classification head on the phantom MR tumours of ``--data``."""
    from training.data.cases import load_case
    from training.data.phantom_cases import lesion_classes, phantom_sources
    from training.data.preprocess import prepare
    from training.engine.classify import LesionSet, lesion_cube, train_classifier
    from training.models import ModelConfig, build_model
    from training.tasks import LESION_CLASSES, TaskName, get_task

    task = get_task(TaskName.MR_TUMOUR)
    buckets: dict[str, tuple[list[np.ndarray], list[int], list[str]]] = {
        "train": ([], [], []),
        "val": ([], [], []),
    }
    split: dict[str, dict[str, list[str]]] = {}
    for folder in args.data:
        try:
            sources = {s.case_id: s for s in phantom_sources(folder, task)}
            classes = lesion_classes(folder)
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"{exc} (--task {LESION_CLASS} reads fedseg phantoms)"
            ) from exc
        ids = sorted(set(sources) & set(classes))
        train_ids, val_ids = _split(ids, args.val_fraction, args.seed)
        split[str(folder)] = {"train": train_ids, "val": val_ids}
        for name, chosen in (("train", train_ids), ("val", val_ids)):
            cubes, labels, case_ids = buckets[name]
            for cid in chosen:
                case = load_case(sources[cid], modality=task.modality)
                prepared = prepare(case.image, case.affine, case.labels, task)
                assert prepared.labels is not None
                cubes.append(lesion_cube(prepared.image, prepared.labels > 0))
                labels.append(LESION_CLASSES.index(classes[cid]))
                case_ids.append(cid)
    if not buckets["train"][0]:
        raise ConfigurationError("no phantom MR tumours with a class found under --data")
    train_set, val_set = (
        LesionSet.stack(*buckets["train"]),
        LesionSet.stack(*buckets["val"])
        if buckets["val"][0]
        else LesionSet.stack(*buckets["train"]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split.json").write_text(json.dumps(split, indent=2))
    model_config = ModelConfig(
        heads={task.name.value: task.num_classes}, classifier_classes=len(LESION_CLASSES)
    )
    model = build_model(model_config, seed=args.seed)
    result = train_classifier(model, train_set, val_set, _config(args), args.out)
    logger.info(
        "best validation %s %.4f at step %d", result.metric, result.best_score, result.best_step
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Train and write ``best.pt``, ``last.pt`` and ``result.json`` into ``--out``."""
    if args.task == LESION_CLASS:
        from monai.utils import set_determinism

        set_determinism(seed=args.seed)
        return run_classifier(args)
    from monai.utils import set_determinism

    from training.data.cases import discover_cases, load_case
    from training.data.preprocess import Prepared, prepare
    from training.engine import train
    from training.models import ModelConfig, build_model
    from training.tasks import get_task

    task = get_task(args.task)
    set_determinism(seed=args.seed)
    train_cases: list[Prepared] = []
    val_cases: list[Prepared] = []
    annotated: list[np.ndarray] = []  # per training case: which classes its site labels
    split: dict[str, dict[str, list[str]]] = {}
    for folder in args.data:
        try:
            sources = discover_cases(folder, task=task)
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from exc
        by_id = {s.case_id: s for s in sources}
        train_ids, val_ids = _split(list(by_id), args.val_fraction, args.seed)
        split[str(folder)] = {"train": train_ids, "val": val_ids}
        for ids, bucket in ((train_ids, train_cases), (val_ids, val_cases)):
            for cid in ids:
                case = load_case(by_id[cid], modality=task.modality)
                bucket.append(prepare(case.image, case.affine, case.labels, task))
                if bucket is train_cases:
                    annotated.append(annotated_classes(task.num_classes, case.annotated))
    config = _config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split.json").write_text(json.dumps(split, indent=2))
    model_config = ModelConfig(
        heads={task.name.value: task.num_classes}, deep_supervision=args.deep_supervision
    )
    model = build_model(model_config, seed=args.seed)
    result = train(model, task, train_cases, val_cases, config, args.out, annotated=annotated)
    logger.info("best validation Dice %.4f at step %d", result.best_dice, result.best_step)
    return 0
