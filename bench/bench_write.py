"""Benchmark the write stage: DICOM-SEG, RTSTRUCT, TID 1500 SR and JSON for a large CT.

Usage::

    python bench/bench_write.py [--size full] [--bundle models/ct-organs]

On the phantom CT of ``bench/bench_inference.py`` (512×512×300 at ``--size full``, seed 5) and
its ground-truth map of all phantom organs, each case runs ``write_outputs`` in a fresh process
and prints one JSON line: wall seconds and peak resident memory (the process's own ``VmHWM``)
against the float32 size of the input volume. Cases: ``labels`` (the label map, as
``fedseg segment`` passes it) and ``regions`` (a ``RegionSet`` of full-size masks, as
``fedseg convert`` passes it). Figures are in ``docs/benchmarks.md`` ("Write stage").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_inference import _PEAK, _fresh_process, write_phantom_ct  # noqa: E402

_WRITE = (
    _PEAK
    + """
import json, sys, time
from pathlib import Path
import numpy as np
from service.dicom.volume import read_volume
from service.inference.bundle import ModelBundle
from service.regions import RegionSet
from service.results.outputs import write_outputs
from service.results.provenance import AlgorithmIdentity
volume = read_volume(Path(sys.argv[1]))
labels = np.load(sys.argv[2])
table = ModelBundle.load(Path(sys.argv[3])).manifest.label_table()
mask = labels if sys.argv[4] == "labels" else RegionSet.from_label_map(labels, volume.affine, table)
before = peak_mb()
start = time.perf_counter()
write_outputs(volume, mask, table, AlgorithmIdentity("bench", "1"), Path(sys.argv[5]))
print(json.dumps({"case": sys.argv[4], "write_s": round(time.perf_counter() - start, 2),
                  "input_mb": round(volume.array.nbytes / 2**20),
                  "peak_before_write_mb": round(before), "peak_mb": round(peak_mb())}))
"""
)


def organ_labels(size: str) -> np.ndarray:
    """The ground-truth organ map of the same phantom case that ``write_phantom_ct`` writes."""
    from training.phantoms import PhantomConfig, PhantomModality, Size
    from training.phantoms.cases import make_case

    config = PhantomConfig(
        sites=1, cases_per_site=1, seed=5, size=Size(size), modalities=(PhantomModality.CT,)
    )
    ct = make_case(config, 1, 1).ct
    assert ct is not None, "the phantom config asks for CT"
    return ct.organs.astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "ct-organs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        ct = write_phantom_ct(Path(tmp) / "phantom", args.size)
        labels_path = Path(tmp) / "organs.npy"
        np.save(labels_path, organ_labels(args.size))
        for case in ("labels", "regions"):
            out = Path(tmp) / case
            out.mkdir()
            row = _fresh_process(_WRITE, ct, labels_path, args.bundle, case, out)
            row["peak_x_input"] = round(row["peak_mb"] / row["input_mb"], 2)
            row["load"] = [round(x, 1) for x in os.getloadavg()]
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
