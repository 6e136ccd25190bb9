"""Benchmark inference: fedseg's onnxruntime engine vs torch + MONAI, end to end, memory.

Usage::

    python bench/bench_inference.py [--bundle models/ct-organs] [--run RUN/best.pt] \
        [--size full] [--repeat 2] [--write docs/benchmarks.md]

On one CT phantom (512×512×300 at ``--size full``) and the same bundle it measures:

1. the network part alone: fedseg's sliding window over onnxruntime vs torch eager with MONAI's
   ``sliding_window_inference`` (same weights, input, windows, batch, blending and number of
   threads: all cores, then one), alternating the engines and keeping each one's best time; the
   largest difference between the two outputs, and between fedseg's and MONAI's blending with
   the same torch network. The torch weights are the bundle's own (from its ONNX file, or from
   ``--run`` after checking that they are the same);
2. ``segment_study`` end to end, per stage, and the share spent outside the network;
3. peak resident memory (fresh processes) against the float32 size of the input volume, for
   ``segment_study`` and for reading and segmenting without writing DICOM;
4. the CPU's measured float32 matrix-multiply throughput next to the network's FLOPs per volume.

The machine's load average is printed with the table: other processes on the same cores slow
multi-threaded torch far more than onnxruntime, so compare runs at similar load.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
    from training.phantoms import PhantomConfig, PhantomModality, Size, generate_dataset

    config = PhantomConfig(
        sites=1, cases_per_site=1, seed=5, size=Size(size), modalities=(PhantomModality.CT,)
    )
    generate_dataset(folder, config)
    return next(folder.glob("site-*/case-*/ct"))


def torch_network(bundle_path: Path, run: Path | None = None):  # type: ignore[no-untyped-def]
    """The bundle's network in torch, with exactly the bundle's weights.

    The weights are read from the ONNX file (the exporter names them after the torch
    parameters, so ``load_state_dict(strict=True)`` checks that every one found its place).
    With ``run`` (a checkpoint or a run folder holding ``best.pt``), that checkpoint is loaded
    instead, and refused unless its weights equal the bundle's: a run being retrained next to
    the bundle would otherwise be compared with a different network.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from service.inference.bundle import ModelBundle
    from training.engine.checkpoint import load_model
    from training.models import ModelConfig, MultiTaskUNet

    bundle = ModelBundle.load(bundle_path)
    task = bundle.manifest.task
    weights = {
        item.name.removeprefix("model."): torch.from_numpy(numpy_helper.to_array(item).copy())
        for item in onnx.load(bundle.model_path).graph.initializer
        if item.name.startswith("model.")
    }
    if run is not None:
        net = load_model(run / "best.pt" if run.is_dir() else run)[0]
        state = net.state_dict()
        if any(not torch.equal(state[k], v) for k, v in weights.items()):
            raise SystemExit(f"{run}: checkpoint weights differ from {bundle.model_path}")
        return net
    levels = sorted({int(k.split(".")[2]) for k in weights if k.startswith("encoder.levels.")})
    config = ModelConfig(
        heads={task: int(weights[f"heads.{task}.out.conv.conv.weight"].shape[0])},
        in_channels=int(weights["encoder.levels.0.conv1.conv.weight"].shape[1]),
        filters=tuple(
            int(weights[f"encoder.levels.{n}.conv1.conv.weight"].shape[0]) for n in levels
        ),
    )
    net = MultiTaskUNet(config)
    net.load_state_dict(weights, strict=True)
    return net.eval()


def _best_of(run: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    """Shortest wall time of ``repeat`` calls, and the last output."""
    best, out = float("inf"), np.empty(0)
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def engine_pair(bundle_path: Path, net: Any, image: np.ndarray, threads: int) -> dict[str, Any]:
    """Both engines on ``threads`` threads, same windows, overlap, batch and Gaussian blending."""
    import torch
    from monai.inferers import sliding_window_inference

    from service.inference.bundle import ModelBundle
    from service.inference.session import Device, OnnxModel, SessionOptions
    from service.inference.sliding_window import SlidingWindowConfig, sliding_window

    manifest = ModelBundle.load(bundle_path).manifest
    config = SlidingWindowConfig(manifest.patch_size, manifest.overlap, batch_size=2)
    model = OnnxModel(
        bundle_path / "model.onnx", SessionOptions(device=Device.CPU, intra_op_threads=threads)
    )
    torch.set_num_threads(threads)
    warm = np.zeros((2, image.shape[0], *manifest.patch_size), dtype=np.float32)
    model.predict(warm)
    with torch.no_grad():
        net(torch.from_numpy(warm), manifest.task)

    def ours() -> np.ndarray:
        return sliding_window(image, model.predict, config)

    def theirs() -> np.ndarray:
        with torch.no_grad():
            out = sliding_window_inference(
                torch.from_numpy(image[None]),
                manifest.patch_size,
                2,
                lambda x: net(x, manifest.task),
                overlap=manifest.overlap,
                mode="gaussian",
            )
        result: np.ndarray = out[0].numpy()
        return result

    def ours_with_torch() -> np.ndarray:
        def predict(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out: np.ndarray = net(torch.from_numpy(batch), manifest.task).numpy()
            return out

        return sliding_window(image, predict, config)

    return {"ours": ours, "theirs": theirs, "ours_with_torch": ours_with_torch}


def network_comparison(
    bundle_path: Path, run: Path | None, ct: Path, threads: Sequence[int], repeat: int
) -> dict[str, Any]:
    """Time the network part: onnxruntime engine vs torch + MONAI on the same prepared input.

    For each thread count the two engines alternate ``repeat`` times (so a change in the
    machine's load hits both) and the best time of each is kept.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from service.dicom.volume import read_volume
    from service.inference.bundle import ModelBundle
    from service.inference.preprocess import prepare
    from service.inference.sliding_window import window_starts

    manifest = ModelBundle.load(bundle_path).manifest
    image = prepare(read_volume(ct), manifest).image
    net = torch_network(bundle_path, run)
    windows = len(window_starts(image.shape[1:], manifest.patch_size, manifest.overlap))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, image.shape[0], *manifest.patch_size), manifest.task)
    result: dict[str, Any] = {
        "model_grid": "x".join(str(s) for s in image.shape[1:]),
        "windows": windows,
        "gflop_per_volume": counter.get_total_flops() * windows / 1e9,
        "runs": {},
    }
    for count in threads:
        pair = engine_pair(bundle_path, net, image, count)
        ours_s = theirs_s = float("inf")
        ours = theirs = np.empty(0)
        for _ in range(repeat):
            seconds, ours = _best_of(pair["ours"], 1)
            ours_s = min(ours_s, seconds)
            seconds, theirs = _best_of(pair["theirs"], 1)
            theirs_s = min(theirs_s, seconds)
        result["runs"][count] = {
            "onnxruntime_s": ours_s,
            "torch_monai_s": theirs_s,
            "max_abs_diff": float(np.abs(ours - theirs).max()),
            "max_abs_logit": float(np.abs(theirs).max()),
        }
    # The same torch network through fedseg's sliding window: blending alone vs MONAI's.
    result["blending_diff"] = float(np.abs(pair["ours_with_torch"]() - theirs).max())
    return result


# Peak memory of the process itself: VmHWM starts afresh at exec, while ru_maxrss carries the
# parent's peak over into the child on Linux (a benchmark parent holding torch inflated it).
_PEAK = """
def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
"""

_END_TO_END = (
    _PEAK
    + """
import json, sys, time
from pathlib import Path
from service.config import get_settings
from service.segment import SegmentOptions, segment_study
t = time.perf_counter()
options = SegmentOptions(models=(sys.argv[3],), device="cpu", threads=int(sys.argv[4]))
r = segment_study([Path(sys.argv[1])], Path(sys.argv[2]), options, get_settings())
print(json.dumps({"wall_s": time.perf_counter() - t, "timings": r.timings,
                  "provider": r.series[0].provider, "present": r.series[0].present,
                  "peak_rss_mb": peak_mb()}))
"""
)

# Read and segment only (no DICOM writing): the memory peak of fedseg's own stages.
_SEGMENT_ONLY = (
    _PEAK
    + """
import json, sys
from pathlib import Path
from service.dicom.volume import read_volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import Segmenter
from service.inference.session import Device, SessionOptions
volume = read_volume(Path(sys.argv[1]))
options = SessionOptions(device=Device.CPU, intra_op_threads=int(sys.argv[3]))
result = Segmenter(ModelBundle.load(Path(sys.argv[2])), options).segment(volume)
print(json.dumps({"timings": result.timings, "peak_rss_mb": peak_mb()}))
"""
)


def _fresh_process(script: str, *args: object) -> dict[str, Any]:
    """Run ``script`` in a new interpreter; returns the JSON of its last output line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def network_rows(net: dict[str, Any], gflops: float) -> list[str]:
    """Table rows of the engine comparison, one block per thread count."""
    rows = []
    for threads, run in net["runs"].items():
        ours, theirs = run["onnxruntime_s"], run["torch_monai_s"]
        achieved = net["gflop_per_volume"] / ours, net["gflop_per_volume"] / theirs
        rows += [
            f"| network, fedseg engine (onnxruntime CPU), {threads} thread(s) | {ours:.2f} s "
            f"({achieved[0]:.0f} GFLOP/s, {100 * achieved[0] / gflops:.0f} % of matmul) | |",
            f"| network, torch eager + MONAI sliding window, {threads} thread(s) | "
            f"{theirs:.2f} s ({achieved[1]:.0f} GFLOP/s, {100 * achieved[1] / gflops:.0f} % "
            "of matmul) | |",
            f"| speed-up, {threads} thread(s) | {theirs / ours:.2f}× | ≥ 2× |",
            f"| largest output difference, {threads} thread(s) | {run['max_abs_diff']:.1e} "
            f"(largest logit {run['max_abs_logit']:.1f}) | ≤ 1e-4 |",
        ]
    rows.append(
        "| largest output difference, fedseg sliding window vs MONAI's, both on the torch "
        f"network | {net['blending_diff']:.1e} | ≤ 1e-4 |"
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "ct-organs")
    parser.add_argument(
        "--run", type=Path, help="training checkpoint of the bundle (default: its ONNX weights)"
    )
    parser.add_argument("--size", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each engine")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        ct = write_phantom_ct(Path(tmp) / "phantom", args.size)
        from service.dicom.volume import read_volume

        shape = read_volume(ct).shape
        net = network_comparison(
            args.bundle, args.run, ct, sorted({cores, 1}, reverse=True), args.repeat
        )
        e2e = _fresh_process(_END_TO_END, ct, Path(tmp) / "out", args.bundle, cores)
        own = _fresh_process(_SEGMENT_ONLY, ct, args.bundle, cores)
    gflops = matmul_gflops()
    table = "\n".join(
        [
            _header(args, shape, net, cores, load_before, _load()),
            "",
            "| measure | value | target |",
            "|---|---:|---|",
            *network_rows(net, gflops),
            *pipeline_rows(e2e, own, shape, args.bundle),
            f"| CPU float32 matmul (numpy, 2048²) | {gflops:.0f} GFLOP/s | |",
            f"| network FLOPs per volume | {net['gflop_per_volume']:.0f} GFLOP | |",
        ]
    )
    print(table)
    if args.write:
        replace_section(args.write, "inference", "Inference (CPU)", table)
    return 0


def _header(
    args: argparse.Namespace,
    shape: Sequence[int],
    net: dict[str, Any],
    cores: int,
    load_before: str,
    load_after: str,
) -> str:
    input_mb = int(np.prod(shape)) * 4 / 2**20
    cpu = platform.processor() or platform.machine()
    return (
        f"Machine: {cpu}, {cores} cores, no GPU; Python {platform.python_version()}; load "
        f"average (1/5/15 min) {load_before} at the start and {load_after} at the end (other "
        f"jobs shared the cores). Input: phantom CT {'x'.join(map(str, shape))} "
        f"({input_mb:.0f} MB float32); bundle `{args.bundle.name}`, model grid "
        f"{net['model_grid']}, {net['windows']} windows, batch 2, Gaussian blending; best of "
        f"{args.repeat} alternating runs per engine. Command: "
        f"`python bench/bench_inference.py --size {args.size} --repeat {args.repeat}`."
    )


def pipeline_rows(
    e2e: dict[str, Any], own: dict[str, Any], shape: Sequence[int], bundle: Path
) -> list[str]:
    """Table rows of the end-to-end run and of the memory peaks."""
    timings = e2e["timings"]
    total = sum(timings.values())
    outside = 1 - timings["infer"] / total
    input_mb = int(np.prod(shape)) * 4 / 2**20
    model_mb = (bundle / "model.onnx").stat().st_size / 2**20
    return [
        f"| `segment_study` end to end | {total:.2f} s "
        f"(read {timings['read']:.2f}, preprocess {timings['preprocess']:.2f}, "
        f"infer {timings['infer']:.2f}, postprocess {timings['postprocess']:.2f}, "
        f"write {timings['write']:.2f}) | |",
        f"| share outside the network | {100 * outside:.0f} % | ≤ 25 % |",
        f"| peak resident memory, `segment_study` | {e2e['peak_rss_mb']:.0f} MB = "
        f"{e2e['peak_rss_mb'] / input_mb:.1f}× input (+ model {model_mb:.1f} MB) "
        "| ≤ 4× + model |",
        f"| peak resident memory, read + segment without writing | "
        f"{own['peak_rss_mb']:.0f} MB = {own['peak_rss_mb'] / input_mb:.1f}× input | |",
    ]


if __name__ == "__main__":
    sys.exit(main())
