"""The service's numpy/onnxruntime sliding window equals MONAI's on the same network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from service.inference.session import Device, OnnxModel, SessionOptions
from service.inference.sliding_window import SlidingWindowConfig, sliding_window


def _network() -> torch.nn.Module:
    generator = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv3d(4, 3, 3, padding=1),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return net.eval()


def _export(net: torch.nn.Module, path: Path) -> Path:
    example = torch.zeros(1, 1, 16, 16, 16)
    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={
            "image": {0: "b", 2: "x", 3: "y", 4: "z"},
            "logits": {0: "b", 2: "x", 3: "y", 4: "z"},
        },
        opset_version=17,
        dynamo=False,
    )
    return path


@pytest.mark.parametrize("shape", [(37, 30, 21), (12, 40, 16)])
def test_matches_monai_sliding_window_inference(tmp_path: Path, shape: tuple[int, ...]) -> None:
    net = _network()
    model = OnnxModel(_export(net, tmp_path / "net.onnx"), SessionOptions(device=Device.CPU))
    image = np.random.default_rng(5).normal(size=(1, *shape)).astype(np.float32)
    config = SlidingWindowConfig(patch_size=(16, 16, 16), overlap=0.5, batch_size=3)
    ours = sliding_window(image, model.predict, config)
    with torch.no_grad():
        theirs = sliding_window_inference(
            torch.from_numpy(image[None]), (16, 16, 16), 3, net, overlap=0.5, mode="gaussian"
        )[0].numpy()
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    # The windows do overlap and blend: a single whole-image pass differs at window seams.
    with torch.no_grad():
        whole = net(torch.from_numpy(image[None]))[0].numpy()
    assert np.abs(whole - theirs).max() > 1e-3
