"""Benchmark the DICOM volume reader on the real series in FEDSEG_DATA.

Usage: ``python bench/bench_reader.py [--repeat N] [--write docs/benchmarks.md]``

Prints a Markdown table: files, voxels, wall time (median of N), voxels per second and the
peak resident memory of a fresh process per case, next to the float32 size of the volume.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402
from service.config import get_settings  # noqa: E402

CASES = {
    "raw GE PET, 267 slices (BQML)": "sts001-raw/FDG_PET/image",
    "Siemens MR T1, 512x512x40, oblique": "sts001-raw/MR_T1/image",
    "CT JPEG 2000, 512x512x20, blank UIDs": (
        "ct-totalseg-example/tests/reference_files/example_ct_dicom"
    ),
    "GE CT gantry tilt 18.5 deg (resampled)": "ct-gantry-tilt-ge/In/GE",
    "IBSI CT 202x198x59": "ibsi-sts001-multimodal/ibsi_validation/dicom/STS_001/CT/image",
}

_CHILD = """
import json, resource, sys, time
from service.dicom.volume import read_volume
t = time.perf_counter(); v = read_volume(sys.argv[1]); dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "voxels": int(v.array.size), "files": len(v.slices),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_case(path: Path, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "voxels": runs[0]["voxels"],
        "files": runs[0]["files"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace the reader section of this file")
    args = parser.parse_args()
    data = get_settings().data
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{_cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {args.repeat} runs, each in a fresh process; "
        f"command: `python bench/bench_reader.py --repeat {args.repeat}`.",
        "",
        "| series | files | voxels | seconds | Mvoxel/s | peak RSS MB | float32 volume MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, relative in CASES.items():
        result = run_case(data / relative, args.repeat)
        mb = result["voxels"] * 4 / 2**20
        lines.append(
            f"| {name} | {result['files']:.0f} | {result['voxels']:.0f} | "
            f"{result['seconds']:.2f} | {result['voxels'] / result['seconds'] / 1e6:.1f} | "
            f"{result['peak_rss_mb']:.0f} | {mb:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section(args.write, "reader", "DICOM volume reader", table)
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
