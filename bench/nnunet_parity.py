"""ONNX parity of nnU-Net exports: the measured error against the logits' scale, and wrong exports.

Usage::

    nice python bench/nnunet_parity.py [--model-folder NNUNET_TRAINED_FOLDER ...] \
        [--patch 32,128,128] [--scale 1 30] [--wrong] [--float64] [--threads 2]

Without ``--model-folder`` the network is nnU-Net's default 3D PlainConvUNet (32→320 features,
6 stages, as ``bench_nnunet.py`` plans it) with seeded He-initialised weights and instance-norm
affines drawn as a trained network's (γ uniform in [0.5, 3], β ~ N(0, 0.5)). Each network's
segmentation layers are multiplied by each ``--scale`` (large logits, as a learning rate of 0.1
gives), exported as ``fedseg import nnunet`` exports, and run by torch and onnxruntime on the
importer's random batch of two. One markdown row per network and scale: the largest |logit|,
the largest |onnx − torch|, the largest per-channel ratio to the channel's scale (what
``training/nnunet/parity.py`` bounds by 1e-4), the logits the former per-logit rule
(1e-4 + 1e-4·|logit|) refused, and the rule's verdict. ``--wrong`` adds a row for each wrong
export of ``tests/training/nnunet/test_export_parity.py``; ``--float64`` a column with torch's
own float32 error against float64 on the same batch, relative to the channel scale.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


Network = tuple[object, int, tuple[int, ...]]  # network, input channels, patch


def default_network(patch: tuple[int, ...] = (32, 128, 128)) -> Network:
    """nnU-Net's default 3D network (random weights, trained-like norm affines) on ``patch``."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    torch.manual_seed(0)
    network = PlainConvUNet(
        1, 6, [32, 64, 128, 256, 320, 320], torch.nn.Conv3d,
        [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], [2] * 6, 6, [2] * 5,
        conv_bias=True, norm_op=torch.nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )  # fmt: skip
    network.apply(InitWeights_He(1e-2))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.InstanceNorm3d):
                shape = module.weight.shape
                module.weight.copy_(0.5 + 2.5 * torch.rand(shape, generator=generator))
                module.bias.copy_(0.5 * torch.randn(shape, generator=generator))
    return network.eval(), 1, patch


def folder_network(folder: Path) -> Network:
    """The first fold's network of a trained nnU-Net model folder."""
    from training.nnunet.folder import CheckpointChoice, open_model_folder
    from training.nnunet.network import build_network, load_checkpoint
    from training.nnunet.recipe import configuration_dict

    opened = open_model_folder(folder, None, None, CheckpointChoice.FINAL)
    path = next(iter(opened.checkpoints.values()))
    network = build_network(
        opened.plans, opened.plans_path, opened.dataset, opened.configuration, load_checkpoint(path)
    )
    channels = len(opened.dataset.get("channel_names") or opened.dataset["modality"])
    return network, channels, tuple(int(p) for p in configuration_dict(opened)["patch_size"])


def _scaled(network: object, scale: float) -> object:
    import torch

    out = copy.deepcopy(network)
    with torch.no_grad():
        for layer in out.decoder.seg_layers:  # type: ignore[attr-defined]
            layer.weight.mul_(scale)
            layer.bias.mul_(scale)
    return out


def _float64_error(
    network: object, channels: int, patch: Sequence[int], expected: np.ndarray
) -> str:
    """torch's own float32 error against float64 on the batch, per channel scale (max)."""
    import torch

    generator = torch.Generator().manual_seed(0)  # the batch torch_and_onnx_outputs draws
    batch = torch.randn(2, channels, *patch, generator=generator).double()
    with torch.no_grad():
        exact = copy.deepcopy(network).double()(batch).numpy()  # type: ignore[attr-defined]
    axes = tuple(a for a in range(expected.ndim) if a != 1)
    error = np.abs(expected - exact).max(axis=axes) / np.abs(expected).max(axis=axes)
    return f" {error.max():.1e} |"


def row(
    name: str,
    network: object,
    channels: int,
    patch: Sequence[int],
    data: bytes,
    float64: bool = False,
) -> str:
    """One markdown row: scale, error, ratio, per-logit refusals and the rule's verdict."""
    from training.export import torch_and_onnx_outputs
    from training.nnunet.network import INPUT_NAME
    from training.nnunet.parity import compare_logits

    expected, got = torch_and_onnx_outputs(
        network,  # type: ignore[arg-type]
        data,
        channels,
        tuple(patch),
        input_name=INPUT_NAME,
    )
    report = compare_logits(expected, got)
    verdict = "accepted" if report.accepted else "refused"
    if not np.isfinite(got).all():
        return f"| {name} | {np.abs(expected).max():.1f} | non-finite | – | – | {verdict} |"
    difference = np.abs(got - expected)
    axes = tuple(a for a in range(expected.ndim) if a != 1)
    ratio = (difference.max(axis=axes) / np.abs(expected).max(axis=axes)).max()
    per_logit = int(np.count_nonzero(difference > 1e-4 + 1e-4 * np.abs(expected)))
    out = (
        f"| {name} | {np.abs(expected).max():.1f} | {difference.max():.1e} | {ratio:.1e} | "
        f"{per_logit} of {expected.size} | {verdict} |"
    )
    return out + _float64_error(network, channels, patch, expected) if float64 else out


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-folder", type=Path, action="append", default=[])
    parser.add_argument(
        "--patch", default="32,128,128", help="the default network's patch (z,y,x; x/y by 32)"
    )
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0, 30.0])
    parser.add_argument("--wrong", action="store_true", help="also the tests' wrong exports")
    parser.add_argument(
        "--float64", action="store_true", help="also torch's float32 error against float64"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import onnx
    import torch

    from training.nnunet.network import export_onnx

    torch.set_num_threads(args.threads)
    patch = tuple(int(p) for p in args.patch.split(","))
    networks: list[tuple[str, Callable[[], Network]]] = [
        (str(f), partial(folder_network, f)) for f in args.model_folder
    ] or [("nnU-Net default 3D", partial(default_network, patch))]
    wrong: dict[str, Callable[[object], None]] = {}
    if args.wrong:
        from tests.training.nnunet.test_export_parity import WRONG_EXPORTS

        wrong = WRONG_EXPORTS
    extra = " torch float32 vs float64 / channel scale |" if args.float64 else ""
    print("| network | max abs logit | max abs difference | max over channels of difference / "
          f"channel scale | per-logit rule refused | rule |{extra}")  # fmt: skip
    print("|---|---|---|---|---|---|" + ("---|" if args.float64 else ""))
    for title, load in networks:
        base, channels, patch = load()
        for scale in args.scale:
            network = _scaled(base, scale)
            data = export_onnx(network, channels, patch)  # type: ignore[arg-type]
            line = row(f"{title} x{scale:g}", network, channels, patch, data, args.float64)
            print(line, flush=True)
            for what, corrupt in wrong.items():
                model = onnx.load_from_string(data)
                corrupt(model)
                data_wrong = model.SerializeToString()
                print(row(f"… {what}", network, channels, patch, data_wrong), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
