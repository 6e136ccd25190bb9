"""What every backend of the ``pet`` experiment shares: split, scores, statistics and plot.

The patient split (:func:`site_split`) is the same for fedseg's U-Net (:mod:`.pet`) and
federated nnU-Net (:mod:`.pet_nnunet`), so both are scored on the same test patients. Scores
are computed on the source PET grid against the reference mask with the service's PET measures
(:func:`score`); methods are compared with the paired Wilcoxon signed-rank test, on |RE| for
the relative errors (:func:`p_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.pet.thresholds import absolute
from training.metrics import dice, jaccard
from training.metrics.pet import MEASURES, pet_relative_errors
from training.stats import paired_wilcoxon

METRICS = ("dice", "jaccard", *(f"re_{m}" for m in MEASURES))
#: Per method, per metric, one value per test patient (in the split's patient order).
Results = Mapping[str, Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class SiteSplit:
    """How patients are dealt into simulated sites and split into training and test."""

    sites: int = 3
    patients: int = 40
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sites < 1 or self.patients < self.sites:
            raise ValueError(f"need at least one patient per site: {self}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"the test fraction lies in (0, 1), got {self.test_fraction}")


def site_split(ids: Sequence[str], split: SiteSplit) -> list[dict[str, list[str]]]:
    """Deal patients into sites (seeded), then split each site's patients 80/20."""
    order = list(np.random.default_rng(split.seed).permutation(sorted(ids)))[: split.patients]
    out = []
    for site in range(split.sites):
        members = sorted(str(p) for p in order[site :: split.sites])
        n_test = max(1, round(split.test_fraction * len(members)))
        out.append({"test": members[:n_test], "train": members[n_test:]})
    return out


def hold_out(
    train: Sequence[str], fraction: float, seed: int, site: int
) -> tuple[list[str], list[str]]:
    """Seeded validation patients inside one site's training patients: (train, validation).

    Raises
    ------
    ValueError
        If the site has fewer than two training patients (one must stay for training).
    """
    if len(train) < 2:
        raise ValueError(
            f"site {site} has {len(train)} training patient(s); holding out validation "
            "patients needs at least two"
        )
    order = [str(p) for p in np.random.default_rng([seed, site]).permutation(sorted(train))]
    n_val = min(len(order) - 1, max(1, round(fraction * len(order))))
    return sorted(order[n_val:]), sorted(order[:n_val])


class TestSplit:
    """The test patients, handed out once: every choice must be made before they are scored."""

    def __init__(self, patients: Sequence[str]) -> None:
        if not patients:
            raise ValueError("the test split holds no patient")
        self._patients = tuple(patients)
        self.looks = 0

    def open(self) -> tuple[str, ...]:
        """The test patients; a second call raises.

        Raises
        ------
        RuntimeError
            If the test split was opened before in this run.
        """
        if self.looks:
            raise RuntimeError(
                "the test split was already scored in this run; make choices on the "
                "validation patients and score the test patients once, at the end"
            )
        self.looks += 1
        return self._patients


def score(
    suv: np.ndarray, affine: np.ndarray, mask: np.ndarray, truth: np.ndarray
) -> dict[str, float]:
    """Dice, Jaccard and the relative errors (%) of the PET measures of ``mask``."""
    mask, truth = np.asarray(mask, dtype=bool), np.asarray(truth, dtype=bool)
    errors = pet_relative_errors(suv, affine, mask, truth)
    return {"dice": dice(mask, truth), "jaccard": jaccard(mask, truth)} | {
        f"re_{k}": v for k, v in errors.items()
    }


def threshold_mask(suv: np.ndarray) -> np.ndarray:
    """The SUV ≥ 2.5 baseline on the whole (tumour-centred) field of view."""
    return absolute(suv)


def p_value(results: Results, a: str, b: str, metric: str) -> str:
    """Paired Wilcoxon p of methods ``a`` and ``b`` on ``metric`` (|RE| for relative errors)."""
    x, y = (np.asarray(results[m][metric], dtype=np.float64) for m in (a, b))
    if metric.startswith("re_"):
        x, y = np.abs(x), np.abs(y)
    return f"{paired_wilcoxon(x, y).p_value:.3f}"


def comparison_rows(
    results: Results, methods: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> list[list[str]]:
    """One row per metric: mean ± sd of each method, then the Wilcoxon p of each pair."""
    from federation.experiments.report import mean_sd

    return [
        [
            metric,
            *(mean_sd(results[m][metric]) for m in methods),
            *(p_value(results, a, b, metric) for a, b in pairs),
        ]
        for metric in METRICS
    ]


def plot_dice(
    x: Sequence[float], y: Sequence[float], labels: tuple[str, str], title: str, path: Path
) -> None:
    """Scatter of two methods' Dice per test patient, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(x, y)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
