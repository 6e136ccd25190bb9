"""``fedseg suv DIR [--suv-type TYPE] [--json]``: how each PET volume converts to SUV."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from service.config import get_settings
from service.dicom.volume import VolumePlan, discover
from service.errors import DicomInputError, SuvError
from service.pet.body_size import SuvType
from service.pet.suv import compute_suv_factors


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``suv`` subcommand."""
    parser = subparsers.add_parser(
        "suv",
        help="show the SUV conversion of each PET volume (factors, times, units, warnings)",
        description=(
            "For each PET volume under the given files or folders, print the SUV scaling "
            "factor(s), the SUV type, the injection and scan times and units used, and warnings."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, help="DICOM files or folders")
    parser.add_argument(
        "--suv-type",
        choices=[t.value for t in SuvType],
        default=SuvType.BW.value,
        help="normalisation: body weight (default), lean body mass, surface area, ideal weight",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def describe_plan(plan: VolumePlan, suv_type: SuvType) -> dict[str, object]:
    """SUV conversion of one planned PET volume, from headers alone (no pixel decoding)."""
    planes = plan.stack.planes
    row: dict[str, object] = {
        "series_instance_uid": plan.stack.series_instance_uid,
        "series_description": str(plan.header.get("SeriesDescription", "")),
        "stack": plan.stack.label,
        "slices": len(planes),
    }
    try:
        conversion = compute_suv_factors(
            [p.dataset for p in planes],
            suv_type,
            [None if p.frame_index is None else p.frame_index + 1 for p in planes],
        )
    except SuvError as exc:
        row.update({"error": str(exc)})
        return row
    row.update(conversion.describe())
    row["error"] = None
    return row


def run(args: argparse.Namespace) -> int:
    """Describe every PET volume's conversion; exit with SuvError's code if any fails."""
    found = discover(args.paths, get_settings())
    plans = [plan for plan in found.plans if plan.modality == "PT"]
    if not plans:
        kinds = sorted({p.modality for p in found.plans}) or ["none"]
        raise DicomInputError(
            f"no PET volume in {', '.join(str(p) for p in args.paths)} "
            f"(image modalities found: {', '.join(kinds)})"
        )
    rows = [describe_plan(plan, SuvType(args.suv_type)) for plan in plans]
    if args.json:
        json.dump({"volumes": rows}, sys.stdout, indent=2)
        print()
    else:
        _print_text(rows)
    return SuvError.exit_code if any(row["error"] for row in rows) else 0


def _print_text(rows: list[dict[str, object]]) -> None:
    for row in rows:
        print(f"PET {row['series_instance_uid']} ({row['slices']} planes)")
        if row["error"]:
            print(f"  ERROR: {row['error']}")
            continue
        factor = row["factor"]
        factors = row["factors"]
        shown = f"{factor:.9g}" if isinstance(factor, float) else f"per plane: {factors}"
        print(f"  SUV{row['suv_type']} ({row['suv_unit']}) = value × {shown}")
        print(f"  units {row['units']}, decay correction {row['decay_correction']}")
        print(f"  method: {row['method']}")
        if row["scan_datetime"] or row["injection_datetime"]:
            scan = row["scan_datetime"] or "per plane"
            print(
                f"  injection {row['injection_datetime']}, scan {scan} "
                f"({row['scan_time_source']}), decay {row['decay_seconds']} s"
            )
        for warning in row["warnings"]:  # type: ignore[attr-defined]
            print(f"  warning: {warning}")
