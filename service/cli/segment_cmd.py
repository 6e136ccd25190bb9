"""``fedseg segment DIR --out OUT``: DICOM study in, SEG / RTSTRUCT / SR / JSON out."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from service.cli import structure_table
from service.cli.output_options import add_formats_argument
from service.config import get_settings
from service.inference.session import Device, Engine, Mirroring, Precision
from service.inference.sliding_window import Progress
from service.qc.enum import QcPolicy
from service.qc.report import qc_lines
from service.results.kinds import ResultKind
from service.results.outputs import OutputOptions, parse_formats
from service.segment import STAGES, SegmentOptions, SeriesResult, StudyResult, segment_study


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` subcommand."""
    parser = subparsers.add_parser(
        "segment",
        help="segment a DICOM study with the installed models and write SEG, RTSTRUCT, SR, JSON",
        description=(
            "Read the study, pick the series each model applies to (modality and the rules in "
            "its manifest), segment, and write seg.dcm, rtstruct.dcm, sr.dcm and "
            "measurements.json into OUT (one sub-folder per series when several are segmented)."
        ),
    )
    parser.add_argument("study", nargs="+", type=Path, help="DICOM folder(s) or files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="model name, task or bundle folder (repeatable; default: every installed model)",
    )
    parser.add_argument(
        "--device",
        choices=[d.value for d in Device],
        default="auto",
        help="where the model runs: auto takes a GPU when onnxruntime offers one, else the "
        "CPU; cuda fails when no GPU can be used (default: auto)",
    )
    parser.add_argument(
        "--engine",
        choices=[e.value for e in Engine],
        default=None,
        help="inference engine: onnxruntime (CPU, CUDA, TensorRT) or openvino (CPU); checked "
        "at load, an engine or device that does not run as asked is an error (default: "
        "FEDSEG_INFERENCE_ENGINE, else onnxruntime)",
    )
    parser.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default=None,
        help="network arithmetic: f32 (the exported network's) or bf16 (engine openvino on CPUs "
        "with AMX/AVX512-BF16: faster, labels change near boundaries); checked at load "
        "(default: FEDSEG_INFERENCE_PRECISION, else f32)",
    )
    parser.add_argument("--fast", action="store_true", help="less window overlap (quicker)")
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time mirroring: --tta mirrors every model that allows it, --no-tta none "
        "(up to 8 times faster); default: FEDSEG_INFERENCE_MIRRORING, else the model's own "
        "recipe (nnU-Net models mirror as nnUNetPredictor does, fedseg's U-Nets do not)",
    )
    add_formats_argument(parser)
    parser.add_argument(
        "--threads",
        type=_thread_count,
        default=None,
        metavar="N",
        help="onnxruntime intra-op threads (0: one per physical core; default: "
        "FEDSEG_INFERENCE_THREADS, else 0)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run models on series outside their intended use (the results are still QC'd)",
    )
    parser.add_argument(
        "--qc-policy",
        choices=[p.value for p in QcPolicy],
        default=None,
        help="structures failing QC: withhold (kept out of SEG/RTSTRUCT, listed in the SR), "
        "flag (sent, marked) or off (default: FEDSEG_QC_POLICY, else withhold)",
    )
    parser.set_defaults(handler=run)


_MIRRORING = {True: Mirroring.ON, False: Mirroring.OFF}


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count (0 or more)")
    return value


def _bar_factory(quiet: bool) -> Callable[[str], Progress]:
    def make(label: str) -> Progress:
        bar = tqdm(desc=label, unit="window", file=sys.stderr, leave=False, disable=quiet)

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

        return update

    return make


def run(args: argparse.Namespace) -> int:
    """Segment and print a summary; exit 1 when a series failed."""
    settings = get_settings(
        inference_threads=args.threads,
        inference_engine=args.engine,
        inference_precision=args.precision,
        inference_mirroring=None if args.tta is None else _MIRRORING[args.tta],
    )
    options = SegmentOptions(
        models=tuple(args.model),
        device=Device(args.device),
        engine=settings.inference_engine,
        precision=settings.inference_precision,
        fast=args.fast,
        mirroring=settings.inference_mirroring,
        threads=settings.inference_threads,
        output=OutputOptions(formats=parse_formats(args.formats)),
        force=args.force,
        qc_policy=QcPolicy(args.qc_policy) if args.qc_policy else None,
    )
    result = segment_study(
        args.study, args.out, options, settings, _bar_factory(getattr(args, "quiet", False))
    )
    _print_summary(result)
    return 1 if result.failed else 0


def _print_qc(series: SeriesResult) -> None:
    """Intended use, and each structure's QC verdict with its reasons."""
    print(f"  intended use: {series.intended_use}")
    for line in qc_lines(series.qc or {}):
        print(f"  {line}")


def _print_summary(result: StudyResult) -> None:
    for series in result.series:
        if series.skipped:
            print(
                f"{series.modality} {series.series_instance_uid}: {series.model} "
                f"{series.model_version}: SKIPPED, outside its intended use"
            )
            print(f"  intended use: {series.intended_use}")
            for reason in series.applicability.get("reasons", []):  # type: ignore[attr-defined]
                print(f"  reason: {reason}")
            print("  (--force runs it anyway; its results are still checked)")
            continue
        found = ", ".join(series.present) or "nothing"
        print(
            f"{series.modality} {series.series_instance_uid}: {series.model} "
            f"{series.model_version} on {series.provider}: {found}"
        )
        written = series.outputs.get(ResultKind.MEASUREMENTS.value)
        if written and not series.error:
            print(structure_table.render(json.loads(Path(written).read_text())))
        _print_qc(series)
        for name, path in series.outputs.items():
            print(f"  {name:<9} {path}")
        for warning in series.warnings:
            print(f"  warning: {warning}")
        if series.error:
            print(f"  ERROR: {series.error}")
    total = sum(result.timings.values()) or 1.0
    stages = "  ".join(
        f"{stage} {result.timings[stage]:.2f}s ({100 * result.timings[stage] / total:.0f}%)"
        for stage in STAGES
    )
    print(f"timings: {stages}  total {total:.2f}s")
