"""``fedseg convert --image DIR --mask PATH --out OUT``: a mask → DICOM-SEG, RTSTRUCT, SR, JSON."""

from __future__ import annotations

import argparse
from enum import StrEnum
from pathlib import Path

from service.config import get_settings
from service.dicom.volume import Volume, read_volume
from service.errors import ConfigurationError
from service.labels.registry import LabelTable, Task, get_table
from service.masks import load_regions
from service.masks.regions import RegionSet
from service.pet.body_size import SuvType
from service.results.measurements import build_report
from service.results.measurements_json import write_measurements_json
from service.results.provenance import AlgorithmIdentity, software_version
from service.results.rtstruct_writer import write_rtstruct
from service.results.seg_writer import SegType, write_seg
from service.results.sr_writer import write_sr


class OutputFormat(StrEnum):
    """What ``convert`` can write, and the file name each gets in ``--out``."""

    SEG = "seg"
    RTSTRUCT = "rtstruct"
    SR = "sr"
    JSON = "json"

    @property
    def filename(self) -> str:
        """File name in the output folder."""
        return "measurements.json" if self is OutputFormat.JSON else f"{self.value}.dcm"


_DEFAULT_TASK = {"PT": Task.PET_LESION, "MR": Task.MR_TUMOUR, "CT": Task.CT_ORGANS}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a SEG, RTSTRUCT or NIfTI mask into DICOM-SEG, RTSTRUCT, SR and JSON",
        description=(
            "Read a mask (DICOM-SEG, RTSTRUCT or NIfTI label map) onto an image series and "
            "write the chosen outputs into OUT (seg.dcm, rtstruct.dcm, sr.dcm, "
            "measurements.json). Outputs keep the study and get new series."
        ),
    )
    parser.add_argument("--image", type=Path, required=True, help="folder of the image series")
    parser.add_argument("--mask", type=Path, required=True, help="SEG, RTSTRUCT or NIfTI file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--formats",
        default="seg,rtstruct,sr,json",
        help="comma-separated outputs among seg, rtstruct, sr, json (default: all)",
    )
    parser.add_argument(
        "--task",
        choices=[t.value for t in Task],
        help="label table for names and codes (default: from the modality)",
    )
    parser.add_argument("--seg-type", choices=[t.value.lower() for t in SegType], default="binary")
    parser.add_argument("--suv-type", choices=[t.value for t in SuvType], default=SuvType.BW.value)
    parser.add_argument("--algorithm-name", default="fedseg-convert")
    parser.add_argument("--algorithm-version", default=software_version())
    parser.set_defaults(handler=run)


def parse_formats(text: str) -> list[OutputFormat]:
    """Parse ``--formats``; the SR references SEG segments, so it needs the SEG.

    Raises
    ------
    ConfigurationError
        If a format is unknown or SR is asked for without SEG.
    """
    try:
        formats = [OutputFormat(f.strip().lower()) for f in text.split(",") if f.strip()]
    except ValueError as exc:
        known = ", ".join(f.value for f in OutputFormat)
        raise ConfigurationError(f"--formats {text!r}: {exc}; choose among {known}") from exc
    if not formats:
        raise ConfigurationError("--formats is empty")
    if OutputFormat.SR in formats and OutputFormat.SEG not in formats:
        raise ConfigurationError("--formats sr needs seg too: the SR references SEG segments")
    return formats


def run(args: argparse.Namespace) -> int:
    """Convert and print the written paths."""
    formats = parse_formats(args.formats)
    algorithm = AlgorithmIdentity(args.algorithm_name, args.algorithm_version)
    volume = read_volume(args.image, get_settings())
    table = get_table(args.task or _DEFAULT_TASK.get(volume.modality, Task.CT_ORGANS))
    regions = load_regions(args.mask, volume, table)
    for path in convert(volume, regions, table, algorithm, formats, args):
        print(path)
    return 0


def convert(
    volume: Volume,
    regions: RegionSet,
    table: LabelTable,
    algorithm: AlgorithmIdentity,
    formats: list[OutputFormat],
    args: argparse.Namespace,
) -> list[Path]:
    """Write the chosen outputs into ``args.out``; returns their paths."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    written = []
    numbers = {r.name: n for n, r in enumerate((r for r in regions if r.mask.any()), start=1)}
    seg = None
    if OutputFormat.SEG in formats:
        result = write_seg(volume, regions, table, algorithm, SegType(args.seg_type.upper()))
        seg, numbers = result.dataset, result.segment_numbers
        written.append(_save(seg, out / OutputFormat.SEG.filename))
    if OutputFormat.RTSTRUCT in formats:
        rtstruct = write_rtstruct(volume, regions, table, algorithm).dataset
        written.append(_save(rtstruct, out / OutputFormat.RTSTRUCT.filename))
    if OutputFormat.SR in formats or OutputFormat.JSON in formats:
        name = f"{algorithm.name} {algorithm.version}"
        report = build_report(volume, regions, numbers, name, SuvType(args.suv_type))
        if OutputFormat.SR in formats and seg is not None:
            sr = write_sr(volume, seg, report, algorithm)
            written.append(_save(sr, out / OutputFormat.SR.filename))
        if OutputFormat.JSON in formats:
            written.append(write_measurements_json(report, out / OutputFormat.JSON.filename))
    return written


def _save(dataset: object, path: Path) -> Path:
    dataset.save_as(path, enforce_file_format=True)  # type: ignore[attr-defined]
    return path
