"""``fedseg phantoms --out DIR --sites N --seed S``: write a synthetic multi-site dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from service.errors import ConfigurationError
from training.phantoms.config import PhantomConfig, PhantomModality, Size
from training.phantoms.dataset import generate_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``phantoms`` subcommand."""
    parser = subparsers.add_parser(
        "phantoms",
        help="write synthetic multi-site CT/PET/MR phantoms as DICOM with ground truth",
        description=(
            "Generate a deterministic multi-site phantom dataset (DICOM series, NIfTI labels, "
            "truth.json, dataset.json) for training and federated experiments."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--sites", type=int, default=4, help="number of sites (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--cases-per-site", type=int, default=2, help="cases per site (default 2)")
    parser.add_argument(
        "--size", choices=[s.value for s in Size], default=Size.SMALL.value, help="image size"
    )
    parser.add_argument(
        "--modalities",
        default="ct,pt,mr",
        help="comma-separated series per case, from ct, pt, mr (default all)",
    )
    parser.add_argument(
        "--full-labels",
        action="store_true",
        help="label every organ at every site instead of one organ group per site",
    )
    parser.add_argument(
        "--pet-noise", type=float, default=0.0, help="relative PET noise (default 0: exact SUVs)"
    )
    parser.add_argument(
        "--rtstruct",
        action="store_true",
        help="also write each CT case's annotated organs as an RTSTRUCT (rtstruct/RS.dcm), ROI "
        "names spelled differently at each site, as input for `fedseg dataset build`",
    )
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> PhantomConfig:
    try:
        modalities = tuple(
            PhantomModality(m.strip().lower()) for m in args.modalities.split(",") if m.strip()
        )
        return PhantomConfig(
            sites=args.sites,
            cases_per_site=args.cases_per_site,
            seed=args.seed,
            size=Size(args.size),
            modalities=modalities,
            partial_labels=not args.full_labels,
            pet_noise=args.pet_noise,
        )
    except ValueError as exc:
        raise ConfigurationError(f"phantoms: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    """Generate the dataset with a progress bar on stderr and print a one-line summary."""
    config = _config(args)
    total = config.sites * config.cases_per_site
    with tqdm(total=total, desc="phantoms", unit="case", file=sys.stderr) as bar:

        def advance(_: str) -> None:
            bar.update(1)

        index = generate_dataset(args.out, config, progress=advance)
    if args.rtstruct:
        from training.phantoms.rtstruct import write_phantom_rtstructs

        write_phantom_rtstructs(args.out)
    absent = sum(1 for s in index.sites for c in s.cases if c.absent_organs)
    print(
        f"wrote {total} cases ({config.sites} sites x {config.cases_per_site}, "
        f"{config.size.value}, {','.join(index.modalities)}; {absent} with an absent organ) "
        f"to {args.out}"
    )
    return 0
