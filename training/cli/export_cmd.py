"""``fedseg export RUN --out BUNDLE``: a trained run as a service model bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from service.errors import ModelBundleError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a trained run as an ONNX model bundle for the service",
        description="Write model.onnx, manifest.json and checksums.sha256 for one task head.",
    )
    parser.add_argument("run", type=Path, help="training run folder (best.pt) or a checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    parser.add_argument("--task", help="task head to export (default: the run's task)")
    parser.add_argument("--version", default="0.1.0", help="model version (default 0.1.0)")
    parser.add_argument("--name", help="model name (default fedseg-<task>)")
    parser.add_argument("--notes", default="", help="free text recorded in the provenance")
    parser.add_argument(
        "--labels",
        help="comma-separated class names in class order, for a checkpoint that predates "
        "recording them (default: the checkpoint's own list)",
    )
    parser.add_argument(
        "--largest-component",
        action="append",
        default=[],
        metavar="LABEL",
        help="keep only the largest connected component of LABEL (repeatable)",
    )
    parser.add_argument(
        "--min-component-ml",
        type=float,
        default=0.0,
        help="remove label components smaller than this many mL (default 0: keep all)",
    )
    parser.add_argument(
        "--intended-use",
        type=Path,
        metavar="JSON",
        help="the manifest's intended-use block (modality, body regions, ages, slice "
        "thickness, training data; docs/service.md); default: the labels' regions, no limits, "
        "training data 'unstated'",
    )
    parser.set_defaults(handler=run)


def _checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            return path / name
    raise ModelBundleError(f"{path}: no best.pt or last.pt; pass a training run folder")


def run(args: argparse.Namespace) -> int:
    """Export and print where the bundle went."""
    from service.inference.manifest import Postprocessing
    from training.engine.checkpoint import load_model
    from training.export import ExportInfo, export_bundle
    from training.tasks import get_task

    checkpoint = _checkpoint(args.run)
    model, payload = load_model(checkpoint)
    task_name = args.task or payload.get("task")
    if not task_name:
        raise ModelBundleError(f"{checkpoint}: the checkpoint names no task; pass --task")
    metrics = {"val_dice": float(payload["val_dice"])} if "val_dice" in payload else {}
    postprocessing = Postprocessing(
        largest_component=list(args.largest_component), min_component_ml=args.min_component_ml
    )
    from service.qc.intended_use import read_intended_use

    intended_use = None if args.intended_use is None else read_intended_use(args.intended_use)
    info = ExportInfo(
        intended_use=intended_use,
        version=args.version,
        name=args.name,
        validation_metrics=metrics,
        notes=args.notes,
        postprocessing=postprocessing,
    )
    trained = args.labels.split(",") if args.labels else payload.get("labels")
    if trained is None:
        raise ModelBundleError(
            f"{checkpoint} does not record its class names (trained before they were saved); "
            "pass --labels with the names in the order the model was trained with"
        )
    labels = [name.strip() for name in trained]
    bundle = export_bundle(model, get_task(task_name), args.out, info, labels)
    size_mb = bundle.model_path.stat().st_size / 2**20
    print(
        f"wrote {bundle.path} ({bundle.manifest.name} {bundle.manifest.version}, {size_mb:.1f} MB)"
    )
    return 0
