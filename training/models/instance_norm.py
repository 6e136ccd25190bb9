"""Instance normalisation whose statistics stay accurate in float32 engines.

onnxruntime's ``InstanceNormalization`` and OpenVINO's ``MVN`` sum a whole channel (524,288
voxels on nnU-Net's 32×128×128 patch) in one float32 reduction. Measured on nnU-Net's default
3D network, the first norm's output is off by 2.3e-4 (onnxruntime) and 2.6e-3 (OpenVINO) of its
range, against 1e-7 for torch, and the logits end 1.5e-2 and 0.18 away from a float64 forward
pass (torch float32: 3e-5). Summing one spatial axis at a time keeps every float32 sum to at
most one axis' length, and the same exported network lands within 2e-5 (onnxruntime) and 7e-5
(OpenVINO) of float64, at the same speed. The means are ``ReduceSum`` divided by the axis
length, not ``ReduceMean``: OpenVINO fuses a chain of ``ReduceMean`` back into its ``MVN``
kernel (tests/training/models/test_instance_norm.py checks both engines).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm


class AxisWiseInstanceNorm(nn.Module):
    """``nn.InstanceNorm{1,2,3}d`` without running statistics, reduced one axis at a time.

    It holds the replaced norm's ``weight`` and ``bias`` (the same parameters, so a state dict
    loads either way) and computes the same function: zero mean and unit (biased) variance per
    sample and channel over the spatial axes, then the affine transform when there is one.
    """

    def __init__(
        self,
        eps: float = 1e-5,
        weight: nn.Parameter | None = None,
        bias: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        if (weight is None) != (bias is None):
            raise ValueError("an affine instance norm needs both weight and bias")
        self.eps = eps
        self.weight = weight
        self.bias = bias

    @classmethod
    def replacing(cls, norm: _InstanceNorm) -> AxisWiseInstanceNorm:
        """The axis-wise form of ``norm`` (which must normalise with the input's statistics)."""
        if norm.track_running_stats:
            raise ValueError("an instance norm with running statistics is not replaced")
        if norm.affine:
            return cls(norm.eps, norm.weight, norm.bias)
        return cls(norm.eps)

    @staticmethod
    def _mean(x: torch.Tensor) -> torch.Tensor:
        for dim in range(2, x.ndim):
            x = x.sum(dim=dim, keepdim=True) / x.shape[dim]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, *spatial) per sample and channel."""
        centred = x - self._mean(x)
        y = centred / torch.sqrt(self._mean(centred * centred) + self.eps)
        if self.weight is None or self.bias is None:
            return y
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return y * self.weight.view(shape) + self.bias.view(shape)


def use_axis_wise_norms(module: nn.Module) -> int:
    """Replace, in place, every instance norm of ``module`` without running statistics.

    Returns how many were replaced. Parameters keep their state-dict keys.
    """
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, _InstanceNorm) and not child.track_running_stats:
            setattr(module, name, AxisWiseInstanceNorm.replacing(child))
            replaced += 1
        else:
            replaced += use_axis_wise_norms(child)
    return replaced
