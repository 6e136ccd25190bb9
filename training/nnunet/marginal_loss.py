"""nnU-Net's Dice + cross-entropy loss, marginalised over the labels a case does not contour.

A case that lacks labels ``L`` (its site does not contour them) has background voxels that may
hold one of them. :class:`MarginalDCandCELoss` therefore merges background and every label of
``L`` into one "background or uncontoured" class before nnU-Net's own ``DC_and_CE_loss`` sees
the output: channel 0 becomes the log-sum-exp of their logits (so its softmax is the sum of
their probabilities, computed stably), the contoured labels keep their channels, and the target
is renumbered to match (:func:`training.losses.partial.marginal_logits` and
:func:`~training.losses.partial.marginal_target`, the same merge as fedseg's U-Net loss).
Cross-entropy and Dice are then nnU-Net's, with its settings (batch Dice, smoothing, no
background Dice term, ignore label): a contoured label keeps its own terms, an uncontoured one
has none, and the loss is unchanged by moving probability between background and an
uncontoured label. A case that lacks nothing gets exactly nnU-Net's loss.

Cases of one batch that lack different labels are scored in groups (one per set of missing
labels), and the groups' losses are averaged weighted by their number of cases.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.losses.partial import marginal_logits, marginal_target


class MarginalDCandCELoss(nn.Module):
    """nnU-Net's ``DC_and_CE_loss`` on each case's marginal classes.

    Parameters
    ----------
    loss
        nnU-Net's ``DC_and_CE_loss`` as its trainer builds it (softmax Dice and cross-entropy
        of logits; its ``ignore_label``, if any, must lie outside ``0..num_classes - 1``, as
        nnU-Net's does).
    num_classes
        Output channels of the network, background included.

    Before each forward, :attr:`missing` is set to the missing output channels of every case of
    the batch (empty sets for fully contoured cases); ``None`` means no case lacks a label.
    """

    def __init__(self, loss: nn.Module, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"at least two output channels are needed, got {num_classes}")
        self.loss = loss
        self.num_classes = num_classes
        self.missing: tuple[frozenset[int], ...] | None = None

    def forward(self, net_output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of logits ``(b, num_classes, ...)`` against labels ``(b, 1, ...)``."""
        batch = net_output.shape[0]
        if net_output.shape[1] != self.num_classes:
            raise ValueError(
                f"the network gives {net_output.shape[1]} channels, the loss expects "
                f"{self.num_classes}"
            )
        missing = self.missing if self.missing is not None else (frozenset(),) * batch
        if len(missing) != batch:
            raise ValueError(
                f"missing labels given for {len(missing)} cases, the batch has {batch}"
            )
        groups: dict[frozenset[int], list[int]] = {}
        for index, lacking in enumerate(missing):
            groups.setdefault(frozenset(lacking), []).append(index)
        total: torch.Tensor | None = None
        for lacking, indices in groups.items():
            annotated = [c for c in range(1, self.num_classes) if c not in lacking]
            logits, labels = net_output, target
            if len(indices) < batch:
                rows = torch.tensor(indices, device=net_output.device)
                logits, labels = net_output[rows], target[rows]
            part = self.loss(
                marginal_logits(logits, annotated, dim=1),
                marginal_target(labels, annotated, self.num_classes),
            )
            part = part * (len(indices) / batch) if len(groups) > 1 else part
            total = part if total is None else total + part
        assert total is not None  # a batch has at least one case
        return total


def missing_in_target(
    target: torch.Tensor, missing: Sequence[frozenset[int]]
) -> list[tuple[int, list[int]]]:
    """``(case index, labels)`` for each case whose label map holds labels it lists as missing."""
    found = []
    for index, lacking in enumerate(missing):
        if not lacking:
            continue
        present = torch.isin(target[index], torch.tensor(sorted(lacking), device=target.device))
        if bool(present.any()):
            values = torch.unique(target[index][present]).tolist()
            found.append((index, [int(v) for v in values]))
    return found
