"""Axis-wise instance norm: torch's function, and accurate in both engines after export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.requirements import missing
from training.export import network_onnx_bytes
from training.models.instance_norm import AxisWiseInstanceNorm, use_axis_wise_norms


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("norm_class", [nn.InstanceNorm2d, nn.InstanceNorm3d])
def test_equals_torch_instance_norm(norm_class: type[nn.Module], affine: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (2, 3, 12, 10, 8)[: 2 + (3 if norm_class is nn.InstanceNorm3d else 2)]
    x = 50.0 + 10.0 * torch.randn(*shape, generator=generator, dtype=torch.float64)
    norm = norm_class(3, affine=affine).double()
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 2.0, generator=generator)
            norm.bias.uniform_(-1.0, 1.0, generator=generator)
    expected = norm(x)
    got = AxisWiseInstanceNorm.replacing(norm)(x)
    assert torch.allclose(got, expected, rtol=0, atol=1e-10)


def test_replacement_keeps_parameters_and_leaves_running_statistics_alone() -> None:
    network = nn.Sequential(
        nn.Conv3d(1, 4, 3),
        nn.InstanceNorm3d(4, affine=True),
        nn.Sequential(nn.Conv3d(4, 4, 1), nn.InstanceNorm3d(4)),
        nn.InstanceNorm3d(4, track_running_stats=True),
    )
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert use_axis_wise_norms(network) == 2
    assert isinstance(network[1], AxisWiseInstanceNorm)
    assert isinstance(network[2][1], AxisWiseInstanceNorm)
    assert isinstance(network[3], nn.InstanceNorm3d)  # running statistics: not the same function
    after = network.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match="running statistics"):
        AxisWiseInstanceNorm.replacing(nn.InstanceNorm3d(4, track_running_stats=True))


def _engines(data: bytes, x: np.ndarray, folder: Path) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = {"onnxruntime": session.run(None, {"image": x})[0]}
    try:
        import openvino
    except ImportError:
        missing("openvino (fedseg[cpu]) is needed for the engine comparison")
    path = folder / "network.onnx"
    path.write_bytes(data)
    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled.create_infer_request().infer([x])
    outputs["openvino"] = np.asarray(result[compiled.output(0)])
    return outputs


def test_exported_norms_are_accurate_in_both_engines(tmp_path: Path) -> None:
    """A CT-like patch of nnU-Net's size: every engine within 2e-6 of a float64 forward pass.

    With the engines' own InstanceNormalization (one float32 sum per channel), onnxruntime
    was 8e-6 and OpenVINO 5.7e-5 away on this case; axis-wise, both are 2.4e-7 away.
    """
    generator = torch.Generator().manual_seed(0)
    network = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1),
        nn.InstanceNorm3d(4, affine=True),
        nn.LeakyReLU(0.01),
        nn.Conv3d(4, 3, 1),
    ).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.uniform_(-0.5, 0.5, generator=generator)
        network[1].weight.uniform_(0.5, 2.0, generator=generator)
    x = 300.0 + 50.0 * torch.randn(1, 1, 32, 128, 128, generator=generator)
    with torch.no_grad():
        reference = network.double()(x.double()).numpy()
    network.float()
    data = network_onnx_bytes(network, 1, (32, 128, 128), dynamic_spatial=False)
    assert isinstance(network[1], nn.InstanceNorm3d), "export must not change the network"
    scale = float(np.abs(reference).max())
    for engine, output in _engines(data, x.numpy(), tmp_path).items():
        error = float(np.abs(output - reference).max()) / scale
        assert error <= 2e-6, f"{engine}: {error:.1e} of the output's range"
