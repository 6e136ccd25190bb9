"""Benchmark nnU-Net serving: fedseg (onnxruntime, OpenVINO) against nnUNetPredictor itself.

Usage::

    nice python bench/bench_nnunet.py [--model-folder NNUNET_TRAINED_FOLDER] [--dicom CT_DIR] \
        [--threads 1] [--tta] [--write docs/benchmarks.md]

The same trained nnU-Net model folder runs on the same CT, with the same threads and the same
test-time mirroring, three ways, each end to end from the DICOM read to labels on the source
grid, each in a fresh process (for its peak RSS):

- ``fedseg-onnxruntime`` and ``fedseg-openvino``: the folder imported once with
  ``fedseg import nnunet`` (:func:`training.nnunet.importer.import_model`), then read DICOM →
  :class:`service.inference.nnunet.segmenter.NnunetSegmenter`;
- ``nnunet``: read DICOM (fedseg's reader) → NIfTI (:mod:`service.nifti`) → nnU-Net's
  SimpleITKIO → ``nnUNetPredictor.predict_single_npy_array`` (its own preprocessing, sliding
  window and export) on the CPU with ``torch.set_num_threads(threads)``.

Without ``--model-folder`` a folder is written with nnU-Net's default 3D network
(PlainConvUNet, 32→320 features, 6 stages, patch 32×128×128, CT normalisation, 1.5 mm) and
random but seeded weights (output biases balanced on the CT so every label occurs). The CT
defaults to ``$FEDSEG_DATA/ct-totalseg-example`` (FEDSEG_DATA: ../shared/data).

Also measured: the network alone per engine on one patch (GFLOP/s from the ONNX graph's
convolutions) against numpy's float32 matmul rate at the same thread count, and the labels'
agreement with nnU-Net's (voxels equal, Dice per label).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import replace_section  # noqa: E402

RUNNERS = ("fedseg-onnxruntime", "fedseg-openvino", "fedseg-openvino-bf16", "nnunet")
DEFAULT_CT = "ct-totalseg-example/tests/reference_files/example_ct_dicom"
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4}
PATCH = [32, 128, 128]
SPACING = [1.5, 1.5, 1.5]
CT_STATS = {"mean": 80.0, "std": 160.0, "percentile_00_5": -990.0, "percentile_99_5": 1200.0}


def _plans() -> dict[str, Any]:
    """nnU-Net v2 plans with the default 3D PlainConvUNet (6 stages, 32→320 features)."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 6,
            "features_per_stage": [32, 64, 128, 256, 320, 320],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
            "n_conv_per_stage": [2, 2, 2, 2, 2, 2],
            "n_conv_per_stage_decoder": [2, 2, 2, 2, 2],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": PATCH,
        "median_image_size_in_voxels": [27, 333, 333],
        "spacing": SPACING,
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": arch,
        "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset950_BenchCT",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": SPACING,
        "original_median_shape_after_transp": [27, 333, 333],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": config},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {**CT_STATS, "median": 60.0, "min": -1024.0, "max": 3000.0}
        },
    }


def write_model_folder(
    root: Path,
    ct: np.ndarray,
    plans: dict[str, Any] | None = None,
    labels: dict[str, int] | None = None,
) -> Path:
    """An nnU-Net trained-model folder with seeded random weights (default: the default network).

    ``ct`` (HU, nnU-Net's array order) balances the output classes on its central patch;
    ``labels`` is dataset.json's (default :data:`LABELS`).
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans = plans or _plans()
    labels = labels or LABELS
    patch_size = plans["configurations"]["3d_fullres"]["patch_size"]
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(0)
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        len(labels),
        allow_init=True,
        deep_supervision=False,
    ).eval()
    # Balance the output classes on a patch of this CT, so every label occurs in the labels.
    window = (
        np.clip(ct, CT_STATS["percentile_00_5"], CT_STATS["percentile_99_5"]) - CT_STATS["mean"]
    ) / CT_STATS["std"]
    z, y, x = (max(0, (s - p) // 2) for s, p in zip(window.shape, patch_size, strict=True))
    patch = np.zeros(patch_size, dtype=np.float32)
    part = window[z : z + patch_size[0], y : y + patch_size[1], x : x + patch_size[2]]
    patch[: part.shape[0], : part.shape[1], : part.shape[2]] = part
    with torch.no_grad():
        mean = network(torch.from_numpy(patch)[None, None]).mean(dim=(0, 2, 3, 4))
        network.decoder.seg_layers[-1].bias -= mean
    folder = root / plans["dataset_name"] / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    checkpoint = {
        "network_weights": network.state_dict(),
        "init_args": {
            "plans": plans,
            "configuration": "3d_fullres",
            "fold": 0,
            "dataset_json": dataset,
        },
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "current_epoch": 1,
    }
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def network_flops(onnx_path: Path, patch: list[int], channels: int) -> float:
    """FLOPs of one patch through the network's convolutions (2 per multiply-add)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(onnx_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, [1, channels, *patch], strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = value
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        shapes[info.name] = [d.dim_value for d in info.type.tensor_type.shape.dim]
    weights = {w.name: numpy_helper.to_array(w).shape for w in model.graph.initializer}
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv":
            out = shapes[node.output[0]]
            total += 2 * float(np.prod(out)) * float(np.prod(weights[node.input[1]][1:]))
        elif node.op_type == "ConvTranspose":
            w = weights[node.input[1]]
            total += 2 * float(np.prod(shapes[node.input[0]])) * float(np.prod(w[1:]))
    return total


def cpu_model() -> str:
    """The CPU's model name and its bfloat16 units (Linux /proc/cpuinfo), for the table."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line),
        "unknown CPU",
    )
    flags = next((line.split() for line in info.splitlines() if line.startswith("flags")), [])
    units = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    return f"{name} ({', '.join(units) or 'no bf16 units'})"


def matmul_gflops(threads: int, n: int = 2048, repeat: int = 5) -> float:
    """numpy's float32 matmul rate with ``threads`` BLAS threads (measured in a fresh process)."""
    code = (
        "import time, numpy as np; r=np.random.default_rng(0); "
        f"a=r.random(({n},{n}),dtype=np.float32); b=r.random(({n},{n}),dtype=np.float32)\n"
        "a@b; t=[]\n"
        f"for _ in range({repeat}):\n"
        " s=time.perf_counter(); a@b; t.append(time.perf_counter()-s)\n"
        f"print(2*{n}**3/min(t)/1e9)"
    )
    env = {
        **os.environ,
        **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_fedseg(
    engine: str, bundle: Path, dicom: Path, threads: int, tta: bool, precision: str = "f32"
) -> dict[str, Any]:
    """Read DICOM → labels with fedseg's nnU-Net executor; timings, labels."""
    from service.dicom.volume import read_volume
    from service.inference.bundle import ModelBundle
    from service.inference.pipeline import open_segmenter
    from service.inference.session import Device, Engine, Mirroring, Precision, SessionOptions

    start = time.perf_counter()
    options = SessionOptions(
        device=Device.CPU,
        engine=Engine(engine),
        intra_op_threads=threads,
        precision=Precision(precision),
    )
    segmenter = open_segmenter(
        ModelBundle.load(bundle),
        options,
        batch_size=1,
        mirroring=Mirroring.ON if tta else Mirroring.OFF,
    )
    load = time.perf_counter() - start
    start, cpu = time.perf_counter(), _cpu_s()
    volume = read_volume(dicom)
    read = time.perf_counter() - start
    result = segmenter.segment(volume)
    total, cpu = time.perf_counter() - start, _cpu_s() - cpu
    fold = segmenter.runners[0].folds[0]  # type: ignore[attr-defined]
    patch = segmenter.runners[0].model.patch_size  # type: ignore[attr-defined]
    x = np.random.default_rng(0).normal(size=(1, 1, *patch)).astype(np.float32)
    fold.predict(x)
    best = float("inf")
    for _ in range(2):
        s = time.perf_counter()
        fold.predict(x)
        best = min(best, time.perf_counter() - s)
    return {
        "labels": result.labels,
        "load_s": load,
        "read_s": read,
        "total_s": total,
        "cpu_s": cpu,
        "stages": result.timings,
        "patch_s": best,
        "provider": result.provider,
    }


def run_nnunet(folder: Path, dicom: Path, threads: int, tta: bool) -> dict[str, Any]:
    """Read DICOM → NIfTI → nnUNetPredictor → labels, on the CPU."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from service.dicom.volume import read_volume
    from service.nifti import write_nifti
    from training.nnunet.predictor import cpu_predictor

    torch.set_num_threads(threads)
    start = time.perf_counter()
    predictor = cpu_predictor(tta)
    predictor.initialize_from_trained_model_folder(
        str(folder), use_folds=(0,), checkpoint_name="checkpoint_final.pth"
    )
    load = time.perf_counter() - start
    start, cpu = time.perf_counter(), _cpu_s()
    volume = read_volume(dicom)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_nifti(Path(tmp) / "case_0000.nii.gz", volume.array, volume.affine)
        data, properties = SimpleITKIO().read_images([str(path)])
    read = time.perf_counter() - start
    labels = predictor.predict_single_npy_array(data, properties, None, None, False)
    total, cpu = time.perf_counter() - start, _cpu_s() - cpu
    network = predictor.network
    network.load_state_dict(predictor.list_of_parameters[0])
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, *PATCH)).astype(np.float32))
    best = float("inf")
    with torch.inference_mode():
        network(x)
        for _ in range(2):
            s = time.perf_counter()
            network(x)
            best = min(best, time.perf_counter() - s)
    return {
        "labels": np.asarray(labels).transpose(2, 1, 0),
        "load_s": load,
        "read_s": read,
        "total_s": total,
        "cpu_s": cpu,
        "stages": {},
        "patch_s": best,
        "provider": f"torch {torch.__version__} CPU",
    }


def child(args: argparse.Namespace) -> int:
    """One runner in this (fresh) process; writes its labels and figures to --result."""
    if args.run == "nnunet":
        out = run_nnunet(args.model_folder, args.dicom, args.threads, args.tta)
    else:
        engine, _, precision = args.run.removeprefix("fedseg-").partition("-")
        out = run_fedseg(
            engine, args.bundle, args.dicom, args.threads, args.tta, precision or "f32"
        )
    np.save(args.result.with_suffix(".npy"), out.pop("labels"))
    out["peak_rss_mb"] = _peak_rss_mb()
    args.result.write_text(json.dumps(out))
    return 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2 * int((a & b).sum()) / total


def _agreement(labels: np.ndarray, reference: np.ndarray, label_map: dict[int, int]) -> str:
    mapped = np.zeros_like(reference)
    for value, number in label_map.items():
        mapped[reference == value] = number
    equal = float((labels == mapped).mean())
    dices = [
        _dice(labels == n, mapped == n)
        for n in sorted(set(label_map.values()))
        if (mapped == n).any()
    ]
    return (
        f"{100 * equal:.3f} % equal, min Dice {min(dices):.4f}"
        if dices
        else f"{100 * equal:.3f} % equal"
    )


def _run_all(args: argparse.Namespace, bundle: Path, folder: Path, work: Path) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    order = [r for i in range(args.repeat) for r in (RUNNERS if i % 2 == 0 else RUNNERS[::-1])]
    for runner in order:
        result = work / f"{runner}.json"
        command = [
            sys.executable, __file__, "--run", runner, "--bundle", str(bundle),
            "--model-folder", str(folder), "--dicom", str(args.dicom),
            "--threads", str(args.threads), "--result", str(result),
        ] + (["--tta"] if args.tta else [])  # fmt: skip
        print(f"running {runner} ...", file=sys.stderr, flush=True)
        subprocess.run(command, check=True)
        run = json.loads(result.read_text())
        run["labels"] = np.load(result.with_suffix(".npy"))
        best = results.get(runner)
        if best is None:
            results[runner] = run
        else:  # best of the repeats, each figure on its own (load varies between runs)
            if run["total_s"] < best["total_s"]:
                best["stages"] = run["stages"]
            for key in ("total_s", "cpu_s", "patch_s", "read_s"):
                best[key] = min(best[key], run[key])
            best["peak_rss_mb"] = max(best["peak_rss_mb"], run["peak_rss_mb"])
    return results


def _rows(results: dict[str, Any], flops: float, rate: float, label_map: dict[int, int]) -> str:
    reference = results["nnunet"]
    rows = []
    for runner in RUNNERS:
        r = results[runner]
        net = flops / r["patch_s"] / 1e9
        agreement = (
            "reference"
            if runner == "nnunet"
            else _agreement(r["labels"], reference["labels"], label_map)
        )
        speedup = reference["total_s"] / r["total_s"]
        cpu_speedup = reference["cpu_s"] / r["cpu_s"]
        rows.append(
            f"| {runner} | {r['provider']} | {r['total_s']:.1f} s | {speedup:.2f}× "
            f"| {r['cpu_s']:.1f} s | {cpu_speedup:.2f}× "
            f"| {r['patch_s']:.2f} s | {net:.0f} GFLOP/s ({100 * net / rate:.0f} %) "
            f"| {r['peak_rss_mb']:.0f} MB | {agreement} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the three runners and print (or write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = Path(os.environ.get("FEDSEG_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--model-folder", type=Path, default=None, help="trained nnU-Net folder")
    parser.add_argument("--dicom", type=Path, default=data / DEFAULT_CT, help="CT series folder")
    parser.add_argument("--threads", type=int, default=1, help="threads of every engine")
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation")
    parser.add_argument("--write", type=Path, default=None, help="write the table into this file")
    parser.add_argument("--repeat", type=int, default=1, help="runs per runner, alternating")
    parser.add_argument("--run", choices=RUNNERS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return child(args)

    from service.dicom.volume import read_volume
    from service.inference.bundle import ModelBundle
    from training.nnunet.importer import ImportOptions, import_model

    work = Path(tempfile.mkdtemp(prefix="bench-nnunet-"))
    ct = read_volume(args.dicom).array.transpose(2, 1, 0)
    folder = args.model_folder or write_model_folder(work / "model", ct)
    bundle = import_model([folder], work / "bundle", ImportOptions(name="bench-nnunet"))
    recipe = ModelBundle.load(bundle).manifest.nnunet
    assert recipe is not None
    model = recipe.models[0]
    onnx_path = bundle / model.folds[0].onnx
    flops = network_flops(onnx_path, list(model.patch_size), model.num_channels)
    shape = ct.shape[::-1]
    del ct
    results = _run_all(args, bundle, folder, work)
    rate = matmul_gflops(args.threads)
    load = os.getloadavg()
    ct = args.dicom.relative_to(data) if args.dicom.is_relative_to(data) else args.dicom.name
    network = (
        "nnU-Net's default PlainConvUNet (32→320 features, 6 stages), random seeded weights"
        if args.model_folder is None
        else str(folder)
    )
    table = (
        f"CT `{ct}` ({'×'.join(map(str, shape))} voxels, float32 input "
        f"{np.prod(shape) * 4 / 2**20:.0f} MB); network: {network}, patch "
        f"{'×'.join(map(str, model.patch_size))} = {flops / 1e9:.0f} GFLOP, ONNX "
        f"{onnx_path.stat().st_size / 2**20:.0f} MB; {args.threads} thread(s), mirroring TTA "
        f"{'on' if args.tta else 'off'}; numpy float32 matmul {rate:.0f} GFLOP/s at "
        f"{args.threads} thread(s); {cpu_model()}, {platform.machine()}, {os.cpu_count()} "
        "cores, load average "
        f"{load[0]:.1f} at the end.\n\n"
        "End to end: DICOM read to labels on the source grid (nnU-Net: plus its NIfTI round "
        "trip), model loading excluded; best of "
        f"{args.repeat} alternating run(s) each. CPU time (user + system, the process and its "
        "children) is what the load of other processes disturbs least. One patch: the network "
        "alone, wall time, best of 2. Peak RSS: VmHWM of the runner's own process.\n\n"
        "| runner | engine | end to end (wall) | speed-up | end to end (CPU time) | speed-up "
        "| one patch | network rate (of matmul) | peak RSS | labels vs nnU-Net |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        + _rows(results, flops, rate, dict(model.label_map))
    )
    stages = {
        k: {s: round(v, 1) for s, v in results[k]["stages"].items()}
        for k in RUNNERS
        if k != "nnunet"
    }
    reads = ", ".join(f"{k} {results[k]['read_s']:.1f} s" for k in RUNNERS)
    table += (
        f"\nfedseg stages of the fastest run (s, wall): {json.dumps(stages)}; DICOM read: "
        f"{reads}.\n"
    )
    print(table)
    if args.write:
        key = f"nnunet-{args.threads}t{'-tta' if args.tta else ''}"
        title = f"nnU-Net serving, {args.threads} thread(s){', TTA' if args.tta else ''}"
        replace_section(args.write, key, title, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
