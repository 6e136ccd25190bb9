"""``fedseg evaluate --model M --data DIR [--json]``: score a trained model on labelled cases."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.errors import ConfigurationError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a trained model (Dice, Jaccard, HD95, MSD) on labelled cases",
        description="Predict every case under DIR and score it per label, in mm.",
    )
    parser.add_argument("--model", required=True, type=Path, help="checkpoint (best.pt)")
    parser.add_argument("--data", required=True, type=Path, help="folder of labelled cases")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device: auto, cpu, cuda, cuda:1, ... (default: auto)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print per-case and mean scores."""
    import numpy as np

    from service.dicom.geometry import voxel_spacing
    from training.data.cases import discover_cases, load_case
    from training.engine import load_model
    from training.engine.inference import predict_on_source_grid
    from training.engine.loop import resolve_device
    from training.metrics import score_labels
    from training.tasks import get_task

    model, payload = load_model(args.model)
    task = get_task(str(payload.get("task", next(iter(model.config.heads)))))
    device = resolve_device(args.device)
    model.to(device)
    try:
        sources = discover_cases(args.data, task=task)
    except FileNotFoundError as exc:
        raise ConfigurationError(str(exc)) from exc
    cases: dict[str, dict[str, dict[str, float | bool]]] = {}
    for source in sources:
        case = load_case(source, modality=task.modality)
        if case.labels is None:
            continue
        pred = predict_on_source_grid(model, task, case.image, case.affine, device)
        scores = score_labels(pred, case.labels, voxel_spacing(case.affine), task.labels)
        cases[source.case_id] = {name: s.as_dict() for name, s in scores.items()}
    means = {
        name: {
            metric: float(np.mean([c[name][metric] for c in cases.values()]))
            for metric in ("dice", "jaccard", "hd95_mm", "msd_mm")
        }
        for name in task.label_names
    }
    report = {"task": task.name.value, "model": str(args.model), "cases": cases, "mean": means}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(
            f"{'LABEL':<14} {'DICE':>6} {'JACC':>6} {'HD95 mm':>8} {'MSD mm':>7}  (n={len(cases)})"
        )
        for name, m in means.items():
            print(
                f"{name:<14} {m['dice']:6.3f} {m['jaccard']:6.3f} {m['hd95_mm']:8.2f} "
                f"{m['msd_mm']:7.2f}"
            )
    return 0
