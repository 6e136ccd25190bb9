"""``fedseg convert --image DIR --mask PATH --out OUT``: a mask → DICOM-SEG, RTSTRUCT, SR, JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.cli.output_options import add_formats_argument
from service.config import get_settings
from service.dicom.volume import read_volume
from service.labels.registry import Task, get_table
from service.masks import load_regions
from service.pet.body_size import SuvType
from service.qc.enum import QcPolicy
from service.qc.report import check_volume, qc_lines
from service.results.crops import region_crops
from service.results.outputs import OutputOptions, parse_formats, write_outputs
from service.results.provenance import AlgorithmIdentity, software_version
from service.results.seg_writer import SegType

_DEFAULT_TASK = {"PT": Task.PET_LESION, "MR": Task.MR_TUMOUR, "CT": Task.CT_ORGANS}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a SEG, RTSTRUCT or NIfTI mask into DICOM-SEG, RTSTRUCT, SR and JSON",
        description=(
            "Read a mask (DICOM-SEG, RTSTRUCT or NIfTI label map) onto an image series and "
            "write the chosen outputs into OUT (seg.dcm, rtstruct.dcm, sr.dcm, "
            "measurements.json, labels.nii.gz). DICOM outputs keep the study and get new series."
        ),
    )
    parser.add_argument("--image", type=Path, required=True, help="folder of the image series")
    parser.add_argument("--mask", type=Path, required=True, help="SEG, RTSTRUCT or NIfTI file")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    add_formats_argument(parser)
    parser.add_argument(
        "--task",
        choices=[t.value for t in Task],
        help="label table for names and codes (default: from the modality)",
    )
    parser.add_argument(
        "--seg-type",
        choices=[t.value.lower() for t in SegType],
        default="binary",
        help="DICOM-SEG encoding: one bit plane per segment, or one label per pixel "
        "(LABELMAP, DICOM 2024; not every viewer reads it) (default: %(default)s)",
    )
    parser.add_argument(
        "--suv-type",
        choices=[t.value for t in SuvType],
        default=SuvType.BW.value,
        help="PET only: SUV normalisation for the SR and JSON: body weight, lean body mass "
        "(James; Janmahasatian), body surface area, ideal body weight (default: %(default)s)",
    )
    parser.add_argument(
        "--qc-policy",
        choices=[p.value for p in QcPolicy],
        default=QcPolicy.FLAG.value,
        help="structures failing QC: flag (default: a given mask is converted whole, failed "
        "structures marked), withhold (kept out of SEG/RTSTRUCT, listed in the SR) or off",
    )
    parser.add_argument(
        "--algorithm-name",
        default="fedseg-convert",
        help="who made the mask, as the SEG's SegmentAlgorithmName (default: %(default)s)",
    )
    parser.add_argument(
        "--algorithm-version",
        default=software_version(),
        help="version of that algorithm, written with its name (default: this fedseg)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print the written paths."""
    formats = parse_formats(args.formats)
    algorithm = AlgorithmIdentity(args.algorithm_name, args.algorithm_version)
    volume = read_volume(args.image, get_settings())
    table = get_table(args.task or _DEFAULT_TASK.get(volume.modality, Task.CT_ORGANS))
    regions = load_regions(args.mask, volume, table)
    options = OutputOptions(
        formats=formats, seg_type=SegType(args.seg_type.upper()), suv_type=SuvType(args.suv_type)
    )
    crops = list(region_crops(regions, volume, table))
    qc = check_volume(volume, crops, QcPolicy(args.qc_policy))
    written = write_outputs(volume, regions, table, algorithm, args.out, options, qc=qc)
    for path in written.paths.values():
        print(path)
    for line in qc_lines(qc.as_dict()):
        print(line)
    for number, why in regions.refused.items():
        print(f"warning: ROI number {number} not converted: {why}", file=sys.stderr)
    return 0
