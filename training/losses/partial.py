"""Marginal and exclusion loss for partially labelled data (Shi et al., MedIA 2021).

A site that annotates only some labels leaves the others inside its "background". The marginal
loss therefore merges background and every unannotated class into one class whose probability is
their sum: the loss depends on that sum only, so it cannot move probability from an unannotated
organ to background (the two receive the same gradient at every voxel). Classes known to be
absent (e.g. after nephrectomy) stay merged and are also pushed towards zero everywhere by an
exclusion term.

The merge itself is plain functions (:func:`marginal_classes`, :func:`marginal_probabilities`,
:func:`marginal_logits`, :func:`marginal_target`), shared with nnU-Net's marginal loss
(:mod:`training.nnunet.marginal_loss`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

_EPS = 1e-6


@dataclass(frozen=True)
class LabelSupervision:
    """Which classes one training case annotates and which it knows to be absent."""

    annotated: frozenset[int]
    absent: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if 0 in self.annotated or 0 in self.absent:
            raise ValueError("background (0) is implied; list only foreground classes")
        if self.annotated & self.absent:
            raise ValueError(
                f"classes {sorted(self.annotated & self.absent)} both annotated and absent"
            )

    @classmethod
    def full(cls, num_classes: int) -> LabelSupervision:
        """Every foreground class annotated (fully labelled data)."""
        return cls(annotated=frozenset(range(1, num_classes)))

    @classmethod
    def of(cls, annotated: Iterable[int], absent: Iterable[int] = ()) -> LabelSupervision:
        """Build from any iterables of class indices."""
        return cls(frozenset(int(a) for a in annotated), frozenset(int(a) for a in absent))

    def check(self, num_classes: int) -> None:
        """Refuse class indices outside the network's outputs."""
        outside = sorted(c for c in self.annotated | self.absent if not 0 < c < num_classes)
        if outside:
            raise ValueError(f"classes {outside} outside 1..{num_classes - 1}")


def marginal_classes(num_classes: int, annotated: Collection[int]) -> tuple[list[int], list[int]]:
    """The marginal loss's channels: the classes merged into its channel 0, and the rest.

    Returns ``(merged, kept)``: background and every class not in ``annotated``, then the
    annotated classes in ascending order (marginal channels ``1..len(kept)``).

    Raises
    ------
    ValueError
        If ``annotated`` holds background or a class outside ``1..num_classes - 1``.
    """
    outside = sorted(c for c in annotated if not 0 < c < num_classes)
    if outside:
        raise ValueError(f"annotated classes {outside} outside 1..{num_classes - 1}")
    kept = sorted(set(annotated))
    return [c for c in range(num_classes) if c not in kept], kept


def marginal_probabilities(
    probabilities: torch.Tensor, annotated: Collection[int], dim: int = 1
) -> torch.Tensor:
    """Softmax probabilities in marginal channels: channel 0 sums the merged classes."""
    merged, kept = marginal_classes(probabilities.shape[dim], annotated)
    background = probabilities.index_select(dim, _index(merged, probabilities)).sum(dim, True)
    return torch.cat(
        [background, probabilities.index_select(dim, _index(kept, probabilities))], dim
    )


def marginal_logits(logits: torch.Tensor, annotated: Collection[int], dim: int = 1) -> torch.Tensor:
    """Logits whose softmax is :func:`marginal_probabilities` of ``softmax(logits)``.

    Channel 0 is the log-sum-exp of the merged classes' logits (stable where one of them
    dominates), the others are the annotated classes' logits unchanged; so cross-entropy and
    Dice computed from these logits are the marginal ones.
    """
    merged, kept = marginal_classes(logits.shape[dim], annotated)
    background = torch.logsumexp(logits.index_select(dim, _index(merged, logits)), dim, True)
    return torch.cat([background, logits.index_select(dim, _index(kept, logits))], dim)


def marginal_target(
    target: torch.Tensor, annotated: Collection[int], num_classes: int
) -> torch.Tensor:
    """Integer labels in marginal channel order.

    0 stays 0, annotated class ``c`` becomes its position among the annotated classes, an
    unannotated class becomes 0. Values outside ``0..num_classes - 1`` (nnU-Net's ``ignore``
    label) pass unchanged.
    """
    _, kept = marginal_classes(num_classes, annotated)
    lookup = torch.zeros(num_classes, dtype=torch.long, device=target.device)
    for position, c in enumerate(kept, start=1):
        lookup[c] = position
    target = target.long()
    inside = (target >= 0) & (target < num_classes)
    return torch.where(inside, lookup[target.clamp(0, num_classes - 1)], target)


def _index(classes: list[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(classes, dtype=torch.long, device=like.device)


class MarginalLoss(nn.Module):
    """Marginal cross-entropy + marginal soft Dice + exclusion of known-absent classes.

    Parameters
    ----------
    num_classes
        Output channels of the head, background included.
    dice_weight, exclusion_weight
        Weights of the soft Dice and exclusion terms (cross-entropy has weight 1).
    """

    def __init__(
        self, num_classes: int, dice_weight: float = 1.0, exclusion_weight: float = 1.0
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("at least two classes (background and one label) are needed")
        if dice_weight < 0 or exclusion_weight < 0:
            raise ValueError("loss weights cannot be negative")
        self.num_classes = num_classes
        self.dice_weight = dice_weight
        self.exclusion_weight = exclusion_weight

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        supervision: Sequence[LabelSupervision],
    ) -> torch.Tensor:
        """Mean loss over the batch.

        Parameters
        ----------
        logits
            ``(batch, num_classes, i, j, k)``.
        target
            ``(batch, 1, i, j, k)`` or ``(batch, i, j, k)`` integer labels; voxels of classes
            a case does not annotate must be 0.
        supervision
            One entry per case.
        """
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} channels, got {logits.shape[1]}")
        if len(supervision) != logits.shape[0]:
            raise ValueError(f"{len(supervision)} supervision entries for batch {logits.shape[0]}")
        return self.from_probabilities(torch.softmax(logits.float(), dim=1), target, supervision)

    def from_probabilities(
        self,
        probabilities: torch.Tensor,
        target: torch.Tensor,
        supervision: Sequence[LabelSupervision],
    ) -> torch.Tensor:
        """The loss of softmax ``probabilities`` (the same arguments as :meth:`forward`)."""
        if target.ndim == probabilities.ndim:
            target = target[:, 0]
        target = target.long()
        losses = [
            self._case_loss(probabilities[b], target[b], supervision[b])
            for b in range(probabilities.shape[0])
        ]
        return torch.stack(losses).mean()

    def _case_loss(
        self, probabilities: torch.Tensor, target: torch.Tensor, supervision: LabelSupervision
    ) -> torch.Tensor:
        supervision.check(self.num_classes)
        annotated = sorted(supervision.annotated)
        present = set(torch.unique(target).tolist())
        stray = sorted(present - {0, *annotated})
        if stray:
            raise ValueError(f"target holds classes {stray} that the case does not annotate")
        marginal = marginal_probabilities(probabilities, annotated, dim=0)
        marginal_labels = marginal_target(target, annotated, self.num_classes)
        one_hot = nn.functional.one_hot(marginal_labels, len(annotated) + 1)
        one_hot = one_hot.movedim(-1, 0).to(marginal.dtype)
        cross_entropy = -(one_hot * torch.log(marginal.clamp_min(_EPS))).sum(0).mean()
        loss = cross_entropy + self.dice_weight * _soft_dice_loss(marginal, one_hot)
        if supervision.absent and self.exclusion_weight:
            absent = probabilities[sorted(supervision.absent)]
            loss = loss - self.exclusion_weight * torch.log((1 - absent).clamp_min(_EPS)).mean()
        return loss


def _soft_dice_loss(probabilities: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """1 - mean soft Dice over the foreground channels (channel 0 is background)."""
    if probabilities.shape[0] < 2:
        return probabilities.new_zeros(())
    dims = tuple(range(1, probabilities.ndim))
    intersection = (probabilities[1:] * one_hot[1:]).sum(dims)
    total = probabilities[1:].sum(dims) + one_hot[1:].sum(dims)
    return 1 - ((2 * intersection + 1.0) / (total + 1.0)).mean()
