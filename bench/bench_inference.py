"""Benchmark inference: fedseg's onnxruntime engine vs torch + MONAI, end to end, memory.

Usage::

    python bench/bench_inference.py --bundle models/ct-organs --run build/models/ct-organs \
        [--size full] [--write docs/benchmarks.md]

On one CT phantom (512×512×300 at ``--size full``) and the same bundle it measures:

1. the network part alone: fedseg's sliding window over onnxruntime vs torch eager with MONAI's
   ``sliding_window_inference`` (same weights from the run's checkpoint, same input, same windows),
   and the largest difference between the two outputs;
2. ``segment_study`` end to end, per stage, and the share spent outside the network;
3. the peak resident memory of the end-to-end run (fresh process) against the float32 size of
   the input volume;
4. the CPU's measured float32 matrix-multiply throughput next to the network's FLOPs per volume.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Best-of-``repeat`` float32 matrix-multiply throughput of numpy (BLAS), GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def write_phantom_ct(folder: Path, size: str) -> Path:
    """One phantom CT series (site 1, case 1) as DICOM."""
    from training.phantoms import PhantomConfig, generate_dataset

    config = PhantomConfig(sites=1, cases_per_site=1, seed=5, size=size, modalities=("ct",))
    generate_dataset(folder, config)
    return next(folder.glob("site-*/case-*/ct"))


def network_comparison(bundle_path: Path, run: Path, ct: Path) -> dict[str, float]:
    """Time the network part: onnxruntime engine vs torch + MONAI on the same prepared input."""
    import torch
    from monai.inferers import sliding_window_inference
    from torch.utils.flop_counter import FlopCounterMode

    from service.dicom.volume import read_volume
    from service.inference.bundle import ModelBundle
    from service.inference.preprocess import prepare
    from service.inference.session import Device, OnnxModel, SessionOptions
    from service.inference.sliding_window import SlidingWindowConfig, sliding_window, window_starts
    from training.engine.checkpoint import load_model

    bundle = ModelBundle.load(bundle_path)
    manifest = bundle.manifest
    volume = read_volume(ct)
    image = prepare(volume, manifest).image
    config = SlidingWindowConfig(manifest.patch_size, manifest.overlap, batch_size=2)
    model = OnnxModel(bundle.model_path, SessionOptions(device=Device.CPU))
    start = time.perf_counter()
    ours = sliding_window(image, model.predict, config)
    ours_s = time.perf_counter() - start
    net, _ = load_model(run / "best.pt" if (run / "best.pt").exists() else run)
    torch.set_num_threads(os.cpu_count() or 1)
    start = time.perf_counter()
    with torch.no_grad():
        theirs = sliding_window_inference(
            torch.from_numpy(image[None]),
            manifest.patch_size,
            2,
            lambda x: net(x, manifest.task),
            overlap=manifest.overlap,
            mode="gaussian",
        )[0].numpy()
    torch_s = time.perf_counter() - start
    windows = len(window_starts(image.shape[1:], manifest.patch_size, manifest.overlap))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 1, *manifest.patch_size), manifest.task)
    flops = counter.get_total_flops() * windows
    return {
        "model_grid": "x".join(str(s) for s in image.shape[1:]),
        "windows": windows,
        "onnxruntime_s": ours_s,
        "torch_monai_s": torch_s,
        "speedup": torch_s / ours_s,
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "gflop_per_volume": flops / 1e9,
        "achieved_gflops": flops / 1e9 / ours_s,
    }


_END_TO_END = """
import json, resource, sys, time
from pathlib import Path
from service.config import get_settings
from service.segment import SegmentOptions, segment_study
t = time.perf_counter()
r = segment_study([Path(sys.argv[1])], Path(sys.argv[2]), SegmentOptions(models=(sys.argv[3],)),
                  get_settings())
print(json.dumps({"wall_s": time.perf_counter() - t, "timings": r.timings,
                  "provider": r.series[0].provider, "present": r.series[0].present,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def end_to_end(bundle: Path, ct: Path, out: Path) -> dict[str, object]:
    """``segment_study`` in a fresh process: stage timings and peak memory."""
    done = subprocess.run(
        [sys.executable, "-c", _END_TO_END, str(ct), str(out), str(bundle)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "ct-organs")
    parser.add_argument("--run", type=Path, default=ROOT / "build" / "models" / "ct-organs")
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ct = write_phantom_ct(Path(tmp) / "phantom", args.size)
        from service.dicom.volume import read_volume

        shape = read_volume(ct).shape
        net = network_comparison(args.bundle, args.run, ct)
        e2e = end_to_end(args.bundle, ct, Path(tmp) / "out")
    timings = e2e["timings"]
    assert isinstance(timings, dict)
    total = sum(timings.values())
    outside = 1 - timings["infer"] / total
    input_mb = int(np.prod(shape)) * 4 / 2**20
    model_mb = (args.bundle / "model.onnx").stat().st_size / 2**20
    gflops = matmul_gflops()
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Machine: {cpu}, {len(os.sched_getaffinity(0))} cores, no GPU; Python "
        f"{platform.python_version()}. Input: phantom CT {'x'.join(map(str, shape))} "
        f"({input_mb:.0f} MB float32); bundle `{args.bundle.name}`, model grid "
        f"{net['model_grid']}, {net['windows']} windows. Command: "
        f"`python bench/bench_inference.py --size {args.size}`.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| network, fedseg engine (onnxruntime CPU) | {net['onnxruntime_s']:.2f} s | |",
        f"| network, torch eager + MONAI sliding window | {net['torch_monai_s']:.2f} s | |",
        f"| speed-up | {net['speedup']:.2f}× | ≥ 2× |",
        f"| largest output difference | {net['max_abs_diff']:.1e} | ≤ 1e-4 |",
        f"| `segment_study` end to end | {total:.2f} s "
        f"(read {timings['read']:.2f}, preprocess {timings['preprocess']:.2f}, "
        f"infer {timings['infer']:.2f}, postprocess {timings['postprocess']:.2f}, "
        f"write {timings['write']:.2f}) | |",
        f"| share outside the network | {100 * outside:.0f} % | ≤ 25 % |",
        f"| peak resident memory | {e2e['peak_rss_mb']:.0f} MB = "
        f"{float(e2e['peak_rss_mb']) / input_mb:.1f}× input (+ model {model_mb:.1f} MB) "
        f"| ≤ 4× + model |",
        f"| CPU float32 matmul (numpy, 2048²) | {gflops:.0f} GFLOP/s | |",
        f"| network FLOPs per volume | {net['gflop_per_volume']:.0f} GFLOP → achieved "
        f"{net['achieved_gflops']:.0f} GFLOP/s ({100 * net['achieved_gflops'] / gflops:.0f} % "
        "of matmul peak) | |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section(args.write, "inference", "Inference (CPU)", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
