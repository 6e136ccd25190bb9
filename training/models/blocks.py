"""The two halves of the U-Net: shared encoder (with bottleneck) and task decoder head.

Built from MONAI's DynUNet blocks (two 3x3x3 convolutions, instance norm, leaky ReLU), as in
nnU-Net.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks.dynunet_block import UnetBasicBlock, UnetOutBlock, UnetUpBlock
from torch import nn

from training.models.instance_norm import use_axis_wise_norms

_NORM = "instance"


class SharedEncoder(nn.Module):
    """Encoder levels; the last is the bottleneck. Level ``n`` halves the size ``n`` times."""

    def __init__(self, in_channels: int, filters: Sequence[int]) -> None:
        super().__init__()
        if len(filters) < 2:
            raise ValueError("the encoder needs at least two levels (one down-sampling)")
        levels = []
        previous = in_channels
        for level, width in enumerate(filters):
            stride = 1 if level == 0 else 2
            levels.append(UnetBasicBlock(3, previous, width, 3, stride, _NORM))
            previous = width
        self.levels = nn.ModuleList(levels)
        self.filters = tuple(filters)
        use_axis_wise_norms(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every level, finest first; the last one is the bottleneck."""
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class SegmentationHead(nn.Module):
    """Decoder of one task: up-sampling with skip connections, then per-voxel logits."""

    def __init__(self, filters: Sequence[int], num_classes: int, deep_supervision: bool) -> None:
        super().__init__()
        widths = list(filters)
        self.ups = nn.ModuleList(
            UnetUpBlock(3, widths[i + 1], widths[i], 3, 1, 2, _NORM)
            for i in reversed(range(len(widths) - 1))
        )
        self.out = UnetOutBlock(3, widths[0], num_classes)
        # One extra output per intermediate decoder level (coarse to fine, bottleneck excluded).
        self.deep = (
            nn.ModuleList(
                UnetOutBlock(3, widths[i], num_classes) for i in range(1, len(widths) - 1)
            )
            if deep_supervision
            else nn.ModuleList()
        )
        use_axis_wise_norms(self)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits at full size first, then coarser auxiliary outputs when deep-supervised."""
        x = features[-1]
        intermediate = []
        for up, skip in zip(self.ups, reversed(features[:-1]), strict=True):
            x = up(x, skip)
            intermediate.append(x)
        outputs = [self.out(x)]
        # intermediate[-1] is the full-size level; earlier ones are coarser.
        for head, feature in zip(self.deep, reversed(intermediate[:-1]), strict=False):
            outputs.append(head(feature))
        return outputs


class ClassificationHead(nn.Module):
    """Lesion classification from the pooled bottleneck (e.g. benign vs malignant)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(batch, num_classes)``."""
        return self.fc(torch.flatten(self.pool(bottleneck), 1))
