"""Losses, including partial-label training for sites that annotate only some labels."""

from training.losses.partial import (
    LabelSupervision,
    MarginalLoss,
    marginal_classes,
    marginal_logits,
    marginal_probabilities,
    marginal_target,
)

__all__ = [
    "LabelSupervision",
    "MarginalLoss",
    "marginal_classes",
    "marginal_logits",
    "marginal_probabilities",
    "marginal_target",
]
