"""Losses, including partial-label training for sites that annotate only some labels."""

from training.losses.partial import LabelSupervision, MarginalLoss

__all__ = ["LabelSupervision", "MarginalLoss"]
