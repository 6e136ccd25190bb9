"""``fedseg experiment NAME [--smoke] [--out DIR]``: regenerate an experiment report."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from enum import StrEnum
from pathlib import Path

from federation.errors import FederationError


class Backend(StrEnum):
    """Networks an experiment trains: fedseg's U-Net or federated nnU-Net."""

    UNET = "unet"
    NNUNET = "nnunet"


class Experiment(StrEnum):
    """Experiments with a report in docs/experiments."""

    SEGVIZ = "segviz"
    PET = "pet"
    CROSS_SITE = "cross-site"
    CLASSIFICATION = "classification"


#: Experiments with ``--backend nnunet``.
NNUNET_EXPERIMENTS = (Experiment.PET, Experiment.SEGVIZ, Experiment.CROSS_SITE)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` subcommand."""
    parser = subparsers.add_parser(
        "experiment",
        help="run a federated-learning experiment and rewrite its report",
        description="Run an experiment and write docs/experiments/NAME.md with tables and plots.",
    )
    parser.add_argument(
        "name", choices=[e.value for e in Experiment], help="the experiment (its report's name)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny CI-sized run")
    parser.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=Backend.UNET.value,
        help="fedseg's U-Net (NAME.md, default) or federated nnU-Net (NAME-nnunet.md: pet, "
        "segviz, cross-site)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("docs/experiments"),
        help="folder for NAME.md and its plots (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        help="shared data root holding sts-pet/ (pet experiment)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the named experiment."""
    command = (
        shlex.join(["fedseg", "experiment", *sys.argv[2:]])
        if sys.argv[1:2] == ["experiment"]
        else f"fedseg experiment {args.name}{' --smoke' if args.smoke else ''}"
    )
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:  # the report states how many threads trained
        command = f"OMP_NUM_THREADS={shlex.quote(threads)} {command}"
    name, backend = Experiment(args.name), Backend(args.backend)
    if backend is Backend.NNUNET and name not in NNUNET_EXPERIMENTS:
        raise FederationError(
            f"experiment {name.value} has no nnU-Net backend; use --backend nnunet with "
            f"{', '.join(e.value for e in NNUNET_EXPERIMENTS)}"
        )
    if name is Experiment.SEGVIZ:
        if backend is Backend.NNUNET:
            from federation.experiments import segviz_nnunet

            path = segviz_nnunet.main(args.out, args.smoke, command)
        else:
            from federation.experiments import segviz

            path = segviz.main(args.out, args.smoke, command)
    elif name is Experiment.PET:
        data = args.data / "sts-pet"
        if not data.is_dir():
            raise FederationError(f"{data}: sts-pet not found; pass --data <shared data root>")
        if backend is Backend.NNUNET:
            from federation.experiments import pet_nnunet

            path = pet_nnunet.main(args.out, args.smoke, command, data)
        else:
            from federation.experiments import pet

            path = pet.main(args.out, args.smoke, command, data)
    elif name is Experiment.CROSS_SITE:
        if backend is Backend.NNUNET:
            from federation.experiments import cross_site_nnunet

            path = cross_site_nnunet.main(args.out, args.smoke, command)
        else:
            from federation.experiments import cross_site

            path = cross_site.main(args.out, args.smoke, command)
    else:
        from federation.experiments import classification

        path = classification.main(args.out, args.smoke, command)
    sys.stdout.write(f"wrote {path}\n")
    return 0
