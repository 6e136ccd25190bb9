"""Command-line options shared by the commands that write result files."""

from __future__ import annotations

import argparse

from service.results.kinds import DEFAULT_KINDS, OUTPUT_KINDS


def add_formats_argument(parser: argparse.ArgumentParser) -> None:
    """``--formats``: which result files to write (parsed by ``results.outputs.parse_formats``)."""
    parser.add_argument(
        "--formats",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated outputs among {', '.join(OUTPUT_KINDS)} (nifti: labels.nii.gz "
        f"with a labels.json sidecar naming the values; default: {','.join(DEFAULT_KINDS)})",
    )
