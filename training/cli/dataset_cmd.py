"""``fedseg dataset build --dicom DIR... --task TASK --out SITE``: a centre's DICOM as cases.

Needs neither torch nor MONAI: a centre can build and review its site folder before it installs
the training stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from service.errors import DicomInputError
from training.sitedata.build import BuildOptions, SiteFormat, build_site
from training.sitedata.findings import Severity
from training.tasks import TASKS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` subcommand and its ``build`` action."""
    parser = subparsers.add_parser(
        "dataset",
        help="turn a centre's DICOM with RTSTRUCT/SEG into training cases (site folder)",
        description="Build and check training data from clinical DICOM exports.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build",
        help="pair images with RTSTRUCT/SEG, map ROI names to labels, write pseudonymised cases",
        description=(
            "Find image series of the task's modality and the RTSTRUCTs/SEGs that reference "
            "them, map ROI names to the task's labels (TG-263 names and common spellings), "
            "and write one pseudonymised case per image into SITE. Labels a case did not "
            "contour stay unknown (not background). The centre's private folder "
            "(default SITE-private) receives the pseudonym map, the full report and "
            "roi-mapping.json: edit that file and pass it back with --mapping."
        ),
    )
    build.add_argument("--dicom", nargs="+", required=True, type=Path, help="DICOM folders/files")
    build.add_argument(
        "--task",
        required=True,
        choices=[t.value for t in TASKS],
        help="label table the ROI names are mapped to (one of: %(choices)s)",
    )
    build.add_argument("--out", required=True, type=Path, help="site folder to write")
    build.add_argument("--site", help="site name for case pseudonyms (default: SITE's name)")
    build.add_argument("--mapping", type=Path, help="ROI mapping file (edited roi-mapping.json)")
    build.add_argument(
        "--format",
        choices=[f.value for f in SiteFormat],
        default=SiteFormat.FEDSEG.value,
        help="fedseg site folder (default) or nnU-Net v2 raw dataset (imagesTr, labelsTr)",
    )
    build.add_argument(
        "--private",
        type=Path,
        help="folder for the pseudonym map and full report, kept at the centre "
        "(default: SITE-private beside SITE)",
    )
    build.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    """Build, print problems and a summary; exit 0 when at least one case was built."""
    options = BuildOptions(
        dicom=tuple(args.dicom),
        task=args.task,
        out=args.out,
        site=args.site or args.out.name,
        mapping=args.mapping,
        format=SiteFormat(args.format),
        private=args.private,
    )
    with tqdm(desc="cases", unit="case", file=sys.stderr, disable=args.no_progress) as bar:

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = build_site(options, progress=advance)
    problems = [f for f in result.findings if f.severity is not Severity.INFO]
    for finding in problems:
        print(finding.line())
    counts = {s: sum(1 for f in result.findings if f.severity is s) for s in Severity}
    contoured = sorted({n for r in result.records for n in r.contoured})
    print(
        f"built {len(result.records)} cases of {options.task} in {options.out} "
        f"(labels contoured somewhere: {', '.join(contoured) or 'none'}); "
        f"{counts[Severity.ERROR]} errors, {counts[Severity.WARNING]} warnings"
    )
    print(f"review and edit the ROI mapping: {result.mapping} (then rebuild with --mapping)")
    print(f"full report: {result.report}")
    print(f"pseudonym map, keep at the centre: {result.pseudonyms}")
    if not result.records:
        raise DicomInputError(
            f"no training case could be built from {', '.join(map(str, options.dicom))}; "
            f"see {result.report}"
        )
    return 0
