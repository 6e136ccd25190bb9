"""Statistical tests for paired model comparisons (numpy and scipy only)."""

from training.stats.bootstrap import ConfidenceInterval, bootstrap_ci
from training.stats.delong import DeLongResult, delong_test
from training.stats.wilcoxon import WilcoxonResult, paired_wilcoxon

__all__ = [
    "ConfidenceInterval",
    "DeLongResult",
    "WilcoxonResult",
    "bootstrap_ci",
    "delong_test",
    "paired_wilcoxon",
]
