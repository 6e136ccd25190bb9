"""``fedseg import nnunet MODEL_FOLDER... --out BUNDLE``: trained nnU-Net v2 models as a bundle.

The command needs torch and nnunetv2 (the ``train`` extra) only when it runs; building the
parser imports neither, so ``fedseg --help`` stays torch-free.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_CHECKPOINTS = ("final", "best")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` subcommand and its ``nnunet`` action."""
    parser = subparsers.add_parser(
        "import",
        help="import models trained elsewhere (nnU-Net v2, TotalSegmentator) as bundles",
        description="Turn models trained by other tools into fedseg model bundles.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    nnunet = actions.add_parser(
        "nnunet",
        help="trained nnU-Net v2 model folder(s) as one ONNX bundle with nnU-Net's recipe",
        description=(
            "Read plans.json (current or pre-2.4 format), dataset.json, the folds' checkpoints "
            "and postprocessing.json; rebuild each fold's network with nnU-Net's code (no deep "
            "supervision), export it to ONNX (fixed patch, dynamic batch) after checking it "
            "against torch, and write manifest.json with nnU-Net's whole inference recipe. "
            "Several folders make one bundle whose label maps are merged in order (later "
            "models overwrite earlier ones), as TotalSegmentator's 'total' task does. "
            "Checkpoints are pickles: import only folders from a source you trust. See "
            "docs/models.md."
        ),
    )
    nnunet.add_argument(
        "folders",
        nargs="+",
        type=Path,
        metavar="MODEL_FOLDER",
        help="nnU-Net's TRAINER__PLANS__CONFIGURATION folder (plans.json, dataset.json, "
        "fold_N/), or the DatasetNNN_Name folder above it",
    )
    nnunet.add_argument("--out", type=Path, required=True, help="bundle folder to write (new)")
    nnunet.add_argument(
        "--folds",
        nargs="+",
        type=int,
        metavar="N",
        help="folds to import and average (default: every fold_N with the checkpoint)",
    )
    nnunet.add_argument(
        "--checkpoint",
        choices=_CHECKPOINTS,
        default="final",
        help="checkpoint_final.pth (default, what nnU-Net predicts with) or checkpoint_best.pth",
    )
    nnunet.add_argument(
        "--configuration",
        help="nnU-Net configuration, e.g. 3d_fullres (default: the one the folder name says); "
        "cascade stages are refused",
    )
    nnunet.add_argument("--name", help="bundle name (default: from the nnU-Net dataset names)")
    nnunet.add_argument("--version", default="1.0.0", help="bundle version (default 1.0.0)")
    nnunet.add_argument("--description", default="", help="bundle description (free text)")
    nnunet.add_argument(
        "--labels",
        type=Path,
        metavar="TABLE",
        help="label table (service/labels JSON format) that names and codes the labels, "
        "matched by name, display name or TG-263 name (default: fedseg's tables and TG-263 "
        "synonyms; unmatched labels get a generic code and a warning)",
    )
    nnunet.add_argument(
        "--intended-use",
        type=Path,
        metavar="JSON",
        help="the manifest's intended-use block (docs/service.md) (default: research use only, "
        "modality from dataset.json channel_names, training data unstated)",
    )
    nnunet.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Import and print where the bundle went."""
    from service.labels.registry import load_table
    from service.qc.intended_use import read_intended_use
    from training.nnunet.folder import CheckpointChoice
    from training.nnunet.importer import ImportOptions, import_model

    intended_use = None if args.intended_use is None else read_intended_use(args.intended_use)
    options = ImportOptions(
        folds=tuple(args.folds) if args.folds else None,
        checkpoint=CheckpointChoice(args.checkpoint),
        configuration=args.configuration,
        name=args.name,
        version=args.version,
        description=args.description,
        labels=load_table(args.labels) if args.labels is not None else None,
        intended_use=intended_use,
    )
    bundle = import_model(args.folders, args.out, options)
    size_mb = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
    print(f"wrote {bundle} ({size_mb:.1f} MB)")
    return 0
