"""``pet-lesion`` on sts-pet: U-Net vs fixed-threshold baselines on held-out patients.

Run: ``python -m training.experiments.pet_lesion --data ../shared/data/sts-pet --out runs/pet``.
The patient-level split is a seeded permutation of the patient IDs; test patients are never seen
in training or model selection. Baselines threshold the whole cropped field of view (the same
input the network sees): 41 % of its SUVmax, and SUV ≥ 2.5.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.pet.thresholds import absolute, fixed_fraction
from training.data.cases import Case, discover_cases, load_case
from training.data.preprocess import prepare
from training.engine.config import TrainConfig
from training.engine.inference import predict_on_source_grid
from training.engine.loop import build_model, train
from training.metrics.pet import pet_relative_errors
from training.metrics.segmentation import score_label
from training.models import ModelConfig
from training.stats import paired_wilcoxon
from training.tasks import TASKS, TaskName

TASK = TASKS[TaskName.PET_LESION]
METHODS = ("unet", "fixed_41pct", "suv_2.5")
REPORTED = ("dice", "jaccard", "hd95_mm", "re_suv_max", "re_suv_mean", "re_mtv_ml", "re_tlg")


def split(ids: Sequence[str], n_val: int, n_test: int, seed: int) -> dict[str, list[str]]:
    """Patient-level split: a seeded permutation cut into train, validation and test."""
    order = list(np.random.default_rng(seed).permutation(sorted(ids)))
    return {
        "test": sorted(order[:n_test]),
        "val": sorted(order[n_test : n_test + n_val]),
        "train": sorted(order[n_test + n_val :]),
    }


def evaluate_case(case: Case, masks: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Scores of each method's mask against the case's reference."""
    assert case.labels is not None
    truth = case.labels > 0
    from service.dicom.geometry import voxel_spacing

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
        }
    return out


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, object]:
    """Mean ± sd per method and metric, and Wilcoxon p of U-Net vs each baseline."""
    summary: dict[str, object] = {}
    for metric in REPORTED:
        row: dict[str, object] = {}
        values = {m: np.array([c[m][metric] for c in per_case.values()]) for m in METHODS}
        for method in METHODS:
            row[method] = {
                "mean": float(values[method].mean()),
                "sd": float(values[method].std(ddof=1)),
            }
        # Errors are compared by magnitude: a smaller |RE| is better whatever its sign.
        compare = np.abs if metric.startswith("re_") else (lambda v: v)
        for baseline in METHODS[1:]:
            test = paired_wilcoxon(compare(values["unet"]), compare(values[baseline]))
            row[f"p_unet_vs_{baseline}"] = test.p_value
        summary[metric] = row
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate and write ``results.json`` into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validate-every", type=int, default=50)
    parser.add_argument("--n-val", type=int, default=4)
    parser.add_argument("--n-test", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sources = {s.case_id: s for s in discover_cases(args.data)}
    parts = split(list(sources), args.n_val, args.n_test, args.seed)
    cases = {cid: load_case(src, modality="PT") for cid, src in sources.items()}
    prepared = {cid: prepare(c.image, c.affine, c.labels, TASK) for cid, c in cases.items()}
    model = build_model(ModelConfig(heads={TASK.name.value: 2}), seed=args.seed)
    config = TrainConfig(
        steps=args.steps, validate_every=args.validate_every, seed=args.seed, progress=False
    )
    started = time.perf_counter()
    result = train(
        model,
        TASK,
        [prepared[c] for c in parts["train"]],
        [prepared[c] for c in parts["val"]],
        config,
        args.out,
    )
    train_seconds = time.perf_counter() - started
    from training.engine.checkpoint import load_model

    best, _ = load_model(args.out / "best.pt")
    per_case = {}
    for cid in parts["test"]:
        case = cases[cid]
        masks = {
            "unet": predict_on_source_grid(best, TASK, case.image, case.affine) > 0,
            "fixed_41pct": fixed_fraction(case.image, np.ones(case.image.shape, bool)),
            "suv_2.5": absolute(case.image),
        }
        per_case[cid] = evaluate_case(case, masks)
    report = {
        "split": parts,
        "train": {**result.__dict__, "wall_seconds": train_seconds},
        "config": config.as_dict(),
        "per_case": per_case,
        "summary": summarise(per_case),
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
