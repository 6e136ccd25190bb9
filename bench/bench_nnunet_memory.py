"""Peak memory of fedseg's nnU-Net executor on a large CT (default 512×512×900).

Usage::

    nice python bench/bench_nnunet_memory.py [--shape 512,512,900] [--classes 25]
        [--write docs/benchmarks.md]

nnU-Net resamples every class's logits onto the source grid at once, which is what exhausts
memory on large CTs (TotalSegmentator users hit it at 512×512×900). This runs fedseg's executor
(onnxruntime, one thread) on a synthetic CT of that size (0.8×0.8×1.0 mm, a body cylinder with
organs in air at -1000 HU) with a deliberately small nnU-Net network (the memory under test is
the executor's: input copies, resampling, float16 logits, streamed export; the network's own is
one patch) and 1.5 mm spacing, 5 labels (``--classes``: more output classes, generic names
after the first five, as TotalSegmentator's 25 to 100 class tasks), in a fresh process, and
reports its peak RSS against the float32 input.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_nnunet import (  # noqa: E402
    LABELS,
    _peak_rss_mb,
    _plans,
    cpu_model,
    write_model_folder,
)
from bench.report import replace_section  # noqa: E402

SPACING_MM = (0.8, 0.8, 1.0)


def _small_plans() -> dict[str, Any]:
    plans = copy.deepcopy(_plans())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = [32, 64, 64]
    config["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 16, 16, 16, 16]
    config["architecture"]["arch_kwargs"]["n_conv_per_stage"] = [1] * 6
    config["architecture"]["arch_kwargs"]["n_conv_per_stage_decoder"] = [1] * 5
    return plans


def labels_of(classes: int) -> dict[str, int]:
    """dataset.json labels: the bench's five, then generic structures up to ``classes``."""
    if classes < 2:
        raise ValueError(f"--classes must be at least 2 (background and one label), got {classes}")
    names = list(LABELS)[:classes]
    names += [f"structure_{k:03d}" for k in range(len(names), classes)]
    return {name: value for value, name in enumerate(names)}


def write_ct(path: Path, shape: tuple[int, int, int]) -> None:
    """A synthetic CT (i, j, k) in HU, written slice by slice to a .npy file."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    body = ((i - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + (
        (j - shape[1] / 2) / (shape[1] * 0.3)
    ) ** 2 <= 1
    organ = ((i - shape[0] * 0.4) / (shape[0] * 0.12)) ** 2 + (
        (j - shape[1] * 0.5) / (shape[1] * 0.1)
    ) ** 2 <= 1
    rng = np.random.default_rng(0)
    for k in range(shape[2]):
        plane = np.full(shape[:2], -1000.0, dtype=np.float32)
        plane[body] = 40.0
        if shape[2] * 0.3 < k < shape[2] * 0.7:
            plane[organ] = 110.0
        out[:, :, k] = plane + rng.normal(0, 10, shape[:2]).astype(np.float32)
    out.flush()
    del out


def child(bundle: Path, ct: Path, result: Path, classes: int) -> None:
    """Segment the CT in this fresh process; write timings and peak RSS."""
    from pydicom import Dataset

    from service.dicom.volume import Volume
    from service.inference.bundle import ModelBundle
    from service.inference.pipeline import open_segmenter
    from service.inference.session import Device, Mirroring, SessionOptions

    segmenter = open_segmenter(
        ModelBundle.load(bundle),
        SessionOptions(device=Device.CPU, intra_op_threads=1),
        mirroring=Mirroring.OFF,  # the rows say "no TTA"
    )
    baseline = _peak_rss_mb()  # interpreter, libraries and the loaded network
    start = time.perf_counter()
    array = np.load(ct)
    affine = np.diag([*SPACING_MM, 1.0])
    volume = Volume(array, affine, "CT", "1.2.3", "1.2", "1.2.4", "large", "", (), (Dataset(),))
    segmentation = segmenter.segment(volume)
    total = time.perf_counter() - start
    peak = _peak_rss_mb()  # the executor's; the count below is the benchmark's own work
    labels = segmentation.labels
    # bincount casts to intp: 8 bytes a voxel, so 16 slices at a time.
    counts = sum(
        np.bincount(labels[i : i + 16].ravel(), minlength=classes)
        for i in range(0, len(labels), 16)
    )
    result.write_text(
        json.dumps(
            {
                "total_s": total,
                "stages": segmentation.timings,
                "peak_rss_mb": peak,
                "baseline_mb": baseline,
                "label_counts": np.asarray(counts).tolist(),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Build the model and CT, run the executor in a fresh process, print (or write) a row."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="512,512,900", help="CT shape i,j,k")
    parser.add_argument("--classes", type=int, default=5, help="network output classes")
    parser.add_argument("--write", type=Path, default=None, help="write the result here")
    parser.add_argument("--child", nargs=3, type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.classes)
        return 0
    from training.nnunet.importer import ImportOptions, import_model

    shape = tuple(int(v) for v in args.shape.split(","))
    assert len(shape) == 3
    work = Path(tempfile.mkdtemp(prefix="bench-nnunet-memory-"))
    ct_path = work / "ct.npy"
    write_ct(ct_path, (shape[0], shape[1], shape[2]))
    sample = np.load(ct_path, mmap_mode="r")[:, :, shape[2] // 2 - 16 : shape[2] // 2 + 16]
    labels = labels_of(args.classes)
    folder = write_model_folder(
        work / "model", np.asarray(sample).transpose(2, 1, 0), _small_plans(), labels
    )
    bundle = import_model([folder], work / "bundle", ImportOptions(name="bench-memory"))
    result = work / "result.json"
    command = [sys.executable, __file__, "--classes", str(args.classes)]
    subprocess.run([*command, "--child", str(bundle), str(ct_path), str(result)], check=True)
    out = json.loads(result.read_text())
    input_mb = int(np.prod(shape)) * 4 / 2**20
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in out["stages"].items())
    growth = (out["peak_rss_mb"] - out["baseline_mb"]) / input_mb
    body = (
        f"Synthetic CT {'×'.join(map(str, shape))} at {'×'.join(map(str, SPACING_MM))} mm "
        f"(float32 input {input_mb:.0f} MB), a small nnU-Net network (4→16 features, patch "
        f"32×64×64, 1.5 mm, {args.classes} output classes, CT normalisation), fedseg + "
        f"onnxruntime, 1 thread, no TTA; {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} (shared, loaded machine).\n\n"
        "| CT | classes | peak RSS | before the CT (libraries, network) | growth / float32 input "
        "| end to end | stages |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {'×'.join(map(str, shape))} | {args.classes} | {out['peak_rss_mb']:.0f} MB | "
        f"{out['baseline_mb']:.0f} MB | {growth:.2f}× "
        f"| {out['total_s']:.0f} s | {stages} |\n"
    )
    print(body)
    print(f"label voxel counts: {out['label_counts']}")
    if args.write:
        # The default's table and the many-class one are separate sections, each with its rows.
        key, title = "nnunet-memory", "nnU-Net serving: memory on a large CT"
        if args.classes != 5:
            key, title = f"{key}-classes", f"{title}, many classes"
        replace_section(args.write, key, title, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
