"""``pet-lesion`` on sts-pet: U-Net vs fixed-threshold baselines on held-out patients.

Run: ``python -m training.experiments.pet_lesion --data ../shared/data/sts-pet --out runs/pet``.
The patient-level split is a seeded permutation of the patient IDs; test patients are never seen
in training, model selection or threshold calibration. Baselines threshold the whole cropped
field of view (the same input the network sees): 41 % of its SUVmax, and SUV ≥ 2.5.

The U-Net is reported twice: ``unet_argmax`` (arg-max, no post-processing: the rule of the first
run) and ``unet`` (the shipped rule: foreground probability above a threshold calibrated on the
validation patients, then the largest connected component). With ``--whole-body`` the training
set also gets hard-negative crops of the whole-body PET of patient STS_001
(:mod:`training.data.pet_negatives`), who is then kept out of validation and test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.dicom.geometry import voxel_spacing, voxel_volume_ml
from service.inference.preprocess import to_model_grid
from service.pet.thresholds import absolute, fixed_fraction
from training.data.cases import Case, discover_cases, load_case
from training.data.pet_negatives import (
    WHOLE_BODY_PATIENT,
    NegativeSampling,
    load_whole_body_pet,
    negative_crops,
)
from training.data.preprocess import Prepared, prepare
from training.engine.calibration import (
    Calibration,
    calibrate_threshold,
    decide,
    fold_threshold,
    foreground_margin,
)
from training.engine.checkpoint import load_model, save_checkpoint
from training.engine.config import TrainConfig
from training.engine.loop import TrainResult, train
from training.metrics.pet import pet_relative_errors
from training.metrics.segmentation import score_label
from training.models import ModelConfig, MultiTaskUNet, build_model
from training.stats import paired_wilcoxon
from training.tasks import TASKS, TaskName

logger = logging.getLogger(__name__)

TASK = TASKS[TaskName.PET_LESION]
METHODS = ("unet", "unet_argmax", "fixed_41pct", "suv_2.5")
BASELINES = ("fixed_41pct", "suv_2.5")
REPORTED = (
    "dice",
    "jaccard",
    "hd95_mm",
    "re_suv_max",
    "re_suv_mean",
    "re_mtv_ml",
    "abs_re_mtv_ml",
    "re_tlg",
)
METRIC_NAMES = {
    "dice": "Dice",
    "jaccard": "Jaccard",
    "hd95_mm": "HD95 (mm)",
    "re_suv_max": "RE SUVmax (%)",
    "re_suv_mean": "RE SUVmean (%)",
    "re_mtv_ml": "RE MTV (%)",
    "abs_re_mtv_ml": "abs. RE MTV (%)",
    "re_tlg": "RE TLG (%)",
}
METHOD_NAMES = {
    "unet": "U-Net (calibrated + largest component)",
    "unet_argmax": "U-Net arg-max",
    "fixed_41pct": "41 % SUVmax",
    "suv_2.5": "SUV ≥ 2.5",
}


def split(
    ids: Sequence[str], n_val: int, n_test: int, seed: int, train_only: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Patient-level split: a seeded permutation cut into test, validation and train.

    Patients in ``train_only`` (whose data also enter training in another form) are skipped
    when test and validation are filled, so they always land in train; the others keep their
    places in the permutation.
    """
    order = [str(i) for i in np.random.default_rng(seed).permutation(sorted(ids))]
    eligible = [i for i in order if i not in set(train_only)]
    if n_test + n_val > len(eligible):
        raise ValueError(f"{len(eligible)} eligible patients; cannot hold out {n_test + n_val}")
    test, val = eligible[:n_test], eligible[n_test : n_test + n_val]
    return {
        "test": sorted(test),
        "val": sorted(val),
        "train": sorted(set(order) - set(test) - set(val)),
    }


def evaluate_case(case: Case, masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Scores of each method's mask against the case's reference."""
    assert case.labels is not None
    truth = case.labels > 0
    spacing = voxel_spacing(case.affine)
    out = {}
    for method, mask in masks.items():
        scores = score_label(mask, truth, spacing)
        errors = pet_relative_errors(case.image, case.affine, mask, truth)
        out[method] = {
            "dice": scores.dice,
            "jaccard": scores.jaccard,
            "hd95_mm": scores.hd95_mm,
            **{f"re_{k}": v for k, v in errors.items()},
            "abs_re_mtv_ml": abs(errors["mtv_ml"]),
        }
    return out


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, object]]:
    """Mean ± sd per method and metric, and Wilcoxon p of the U-Net vs each baseline."""
    summary: dict[str, dict[str, object]] = {}
    for metric in REPORTED:
        row: dict[str, object] = {}
        values = {m: np.array([c[m][metric] for c in per_case.values()]) for m in METHODS}
        for method in METHODS:
            sd = float(values[method].std(ddof=1)) if len(values[method]) > 1 else 0.0
            row[method] = {"mean": float(values[method].mean()), "sd": sd}
        # Errors are compared by magnitude: a smaller |RE| is better whatever its sign.
        compare = np.abs if "re_" in metric else (lambda v: v)
        for baseline in BASELINES:
            test = paired_wilcoxon(compare(values["unet"]), compare(values[baseline]))
            row[f"p_unet_vs_{baseline}"] = test.p_value
        summary[metric] = row
    return summary


def markdown_table(summary: dict[str, dict[str, object]]) -> str:
    """The results table of ``docs/experiments/pet-lesion.md`` (mean ± sd, Wilcoxon p)."""
    header = ["metric", *(METHOD_NAMES[m] for m in METHODS)]
    header += [f"p (U-Net vs {METHOD_NAMES[b]})" for b in BASELINES]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric in REPORTED:
        row = summary[metric]
        cells = [METRIC_NAMES[metric]]
        for method in METHODS:
            stats = row[method]
            assert isinstance(stats, dict)
            digits = 3 if metric in ("dice", "jaccard") else 1
            cells.append(f"{stats['mean']:.{digits}f} ± {stats['sd']:.{digits}f}")
        cells += [f"{row[f'p_unet_vs_{b}']:.3g}" for b in BASELINES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _masks(model: MultiTaskUNet, case: Case, calibration: Calibration) -> dict[str, np.ndarray]:
    margin = foreground_margin(model, TASK, case.image, case.affine)
    whole = np.ones(case.image.shape, bool)
    return {
        "unet": decide(margin, calibration.threshold, calibration.keep_largest),
        "unet_argmax": margin > 0,
        "fixed_41pct": fixed_fraction(case.image, whole),
        "suv_2.5": absolute(case.image),
    }


def _whole_body_check(model: MultiTaskUNet, case: Case, calibration: Calibration) -> dict:
    """Labelled volume on the whole-body PET (a training patient: not a generalisation test)."""
    assert case.labels is not None
    voxel_ml = voxel_volume_ml(case.affine)
    margin = foreground_margin(model, TASK, case.image, case.affine)
    out: dict[str, object] = {"gtv_mass_ml": float((case.labels > 0).sum() * voxel_ml)}
    for name, mask in {
        "argmax": margin > 0,
        "calibrated": decide(margin, calibration.threshold, keep_largest=False),
        "shipped": decide(margin, calibration.threshold, calibration.keep_largest),
    }.items():
        truth = case.labels > 0
        out[name] = {
            "labelled_ml": float(mask.sum() * voxel_ml),
            "dice_vs_gtv_mass": score_label(mask, truth, voxel_spacing(case.affine)).dice,
        }
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument(
        "--model-seed",
        type=int,
        help="seed of weights, patches and negatives (default: --seed); the split stays",
    )
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--n-val", type=int, default=4)
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--foreground-ratio", type=float, default=0.67)
    parser.add_argument(
        "--whole-body",
        type=Path,
        help="folder with image/ and mask/ of the whole-body PET of STS_001 (sts001-raw/FDG_PET)",
    )
    parser.add_argument("--hot-negatives", type=int, default=10)
    parser.add_argument("--body-negatives", type=int, default=4)
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="skip training: calibrate and evaluate the finished run in --out",
    )
    parser.add_argument(
        "--positive-repeats",
        type=int,
        default=1,
        help="list each training patient this many times per epoch (balances the negatives)",
    )
    return parser


def _training_set(
    args: argparse.Namespace, prepared: dict[str, Prepared], parts: dict[str, list[str]]
) -> tuple[list[Prepared], list[str], Case | None]:
    cases = [prepared[c] for c in parts["train"]] * args.positive_repeats
    names = list(parts["train"]) * args.positive_repeats
    if args.whole_body is None:
        return cases, names, None
    whole = load_whole_body_pet(args.whole_body)
    suv, _ = to_model_grid(whole.image, whole.affine, TASK.spacing)
    seed = args.seed if args.model_seed is None else args.model_seed
    sampling = NegativeSampling(hot=args.hot_negatives, body=args.body_negatives, seed=seed)

    crops = negative_crops(prepare(whole.image, whole.affine, whole.labels, TASK), suv, sampling)
    names += [f"{whole.case_id}#{i}" for i in range(len(crops))]
    return cases + crops, names, whole


def _check_no_leak(parts: dict[str, list[str]], used: Sequence[str]) -> None:
    patients = {name.split("#")[0].removesuffix("-wholebody") for name in used}
    leaked = sorted(patients & set(parts["test"]))
    if leaked:
        raise RuntimeError(f"test patients {leaked} reached training, selection or calibration")


def run(args: argparse.Namespace) -> dict[str, object]:
    """Train, calibrate, evaluate; write ``results.json``, ``report.md``, ``calibrated.pt``."""
    load_start = os.getloadavg()
    sources = {s.case_id: s for s in discover_cases(args.data)}
    train_only = [WHOLE_BODY_PATIENT] if args.whole_body is not None else []
    parts = split(list(sources), args.n_val, args.n_test, args.seed, train_only)
    cases = {cid: load_case(src, modality="PT") for cid, src in sources.items()}
    prepared = {cid: prepare(c.image, c.affine, c.labels, TASK) for cid, c in cases.items()}
    train_cases, trained_on, whole = _training_set(args, prepared, parts)
    _check_no_leak(parts, [*trained_on, *parts["val"]])
    model_seed = args.seed if args.model_seed is None else args.model_seed
    model = build_model(ModelConfig(heads={TASK.name.value: 2}), seed=model_seed)
    config = TrainConfig(
        steps=args.steps,
        validate_every=args.validate_every,
        seed=model_seed,
        foreground_ratio=args.foreground_ratio,
        progress=False,
    )
    started = time.perf_counter()
    val = [prepared[c] for c in parts["val"]]
    if args.evaluate_only:
        result = TrainResult(**json.loads((args.out / "result.json").read_text()))
        train_seconds = result.seconds
    else:
        result = train(model, TASK, train_cases, val, config, args.out)
        train_seconds = time.perf_counter() - started
    best, _ = load_model(args.out / "best.pt")
    margins = [foreground_margin(best, TASK, cases[c].image, cases[c].affine) for c in parts["val"]]
    truths = [np.asarray(cases[c].labels) for c in parts["val"]]
    calibration = calibrate_threshold(margins, truths)
    logger.info(
        "calibrated threshold %.2f (largest component: %s) on %d validation patients",
        calibration.threshold,
        calibration.keep_largest,
        len(parts["val"]),
    )
    folded = fold_threshold(best, TASK.name.value, calibration.threshold)
    save_checkpoint(
        args.out / "calibrated.pt",
        folded,
        task=TASK.name.value,
        val_dice=calibration.val_dice,
        calibration=calibration.as_dict(),
    )
    per_case = {
        cid: evaluate_case(cases[cid], _masks(best, cases[cid], calibration))
        for cid in parts["test"]
    }
    summary = summarise(per_case)
    report: dict[str, object] = {
        "split": parts,
        "trained_on": trained_on,
        "calibrated_on": parts["val"],
        "tested_on": sorted(per_case),
        "train": {**result.__dict__, "wall_seconds": train_seconds},
        "config": config.as_dict(),
        "calibration": calibration.as_dict(),
        "per_case": per_case,
        "summary": summary,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
    }
    if whole is not None:
        report["whole_body"] = _whole_body_check(best, whole, calibration)
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    (args.out / "report.md").write_text(markdown_table(summary))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
