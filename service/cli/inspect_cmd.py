"""``fedseg inspect DIR [--json]``: list every volume found under a folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.config import GeometryPolicy, get_settings
from service.dicom.volume import discover


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` subcommand."""
    parser = subparsers.add_parser(
        "inspect",
        help="list the DICOM volumes in a folder (modality, shape, spacing, warnings)",
        description="List every image volume found under the given files or folders.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--geometry-policy",
        choices=[p.value for p in GeometryPolicy],
        help="how irregular stacks are handled (default: resample)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List volumes; exit 1 when a stack cannot become a volume."""
    settings = get_settings(geometry_policy=args.geometry_policy)
    found = discover(args.paths, settings)
    rows = [plan.describe() for plan in found.plans]
    others = [
        {"modality": str(f.dataset.get("Modality", "")), "path": str(f.path)}
        for f in found.non_image
    ]
    if args.json:
        json.dump({"volumes": rows, "other_objects": others}, sys.stdout, indent=2)
        print()
    else:
        _print_table(rows, others)
    return 1 if any(row["error"] for row in rows) else 0


def _print_table(rows: list[dict[str, object]], others: list[dict[str, str]]) -> None:
    header = f"{'MOD':<4} {'SLICES':>6} {'SHAPE':<15} {'SPACING (mm)':<22} {'ORIENT':<6} SERIES"
    print(header)
    for row in rows:
        shape = "x".join(str(v) for v in row["shape"])  # type: ignore[attr-defined]
        spacing = " x ".join(f"{v:g}" for v in row["spacing_mm"])  # type: ignore[attr-defined]
        series = f"{row['series_instance_uid']}" + (f" [{row['stack']}]" if row["stack"] else "")
        desc = f" {row['series_description']}" if row["series_description"] else ""
        print(
            f"{row['modality']:<4} {row['slices']:>6} {shape:<15} {spacing:<22} "
            f"{row['orientation']:<6} {series}{desc}"
        )
        for warning in row["warnings"]:  # type: ignore[attr-defined]
            print(f"       warning: {warning}")
        if row["error"]:
            print(f"       ERROR: {row['error']}")
    if others:
        kinds: dict[str, int] = {}
        for other in others:
            kinds[other["modality"]] = kinds.get(other["modality"], 0) + 1
        listed = ", ".join(f"{n} {m}" for m, n in sorted(kinds.items()))
        print(f"other objects: {listed}")
