"""``segviz``: multi-organ segmentation from partially labelled sites (Kanhere et al., 2023).

Site n labels one organ group (liver; spleen; both kidneys; pancreas) of phantom CTs. Four
methods are compared on a test set drawn from an unseen phantom seed, in 2-, 3- and 4-site
set-ups, with as many updates of every head in each method:

- *single-dataset*: each site trains its own model on its own labels; an organ is scored with
  the model of the site that labels it;
- *central*: the partially labelled cases are pooled and every head trained on all of them, so
  an organ is "background" in every case from a site that does not label it;
- *conventional FL*: FedAvg of the whole model; each site trains the heads it labels, but every
  block, heads included, is averaged over all sites;
- *SegViz*: FedAvg of the shared block, each head only over the sites that label it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from federation.experiments.report import RunInfo, mean_sd, table, write_report
from federation.local import LocalTraining, evaluate_heads, model_config
from federation.round_step import RoundRules
from federation.simulation import FederatedPlan, SimSite, train_federated, train_pooled
from federation.sites import SiteCase, phantom_cases
from training.phantoms.config import (
    PARTIAL_LABEL_GROUPS,
    PhantomConfig,
    PhantomModality,
    Size,
)

METHODS = ("single-dataset", "central", "conventional FL", "SegViz")


@dataclass(frozen=True)
class SegVizConfig:
    """Size of the experiment."""

    setups: tuple[int, ...] = (2, 3, 4)
    seed: int = 0
    test_seed: int = 1000
    cases_per_site: int = 2
    test_cases_per_site: int = 1
    rounds: int = 10
    local_steps: int = 10
    filters: tuple[int, ...] = (8, 16)
    spacing_mm: float = 12.0
    learning_rate: float = 3e-3

    def __post_init__(self) -> None:
        if any(not 2 <= n <= len(PARTIAL_LABEL_GROUPS) for n in self.setups):
            raise ValueError(f"set-ups must use 2..{len(PARTIAL_LABEL_GROUPS)} sites")


SMOKE = SegVizConfig(
    setups=(2,), cases_per_site=1, test_cases_per_site=1, rounds=2, local_steps=1, filters=(4, 8)
)

#: Dice lists by set-up, method and organ.
Results = dict[int, dict[str, dict[str, list[float]]]]


def _phantoms(seed: int, sites: int) -> PhantomConfig:
    return PhantomConfig(
        sites=sites,
        seed=seed,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        absent_organ_rate=0.0,
    )


def _sites(config: SegVizConfig, count: int) -> list[SimSite]:
    phantoms = _phantoms(config.seed, count)
    sites = []
    for site in range(1, count + 1):
        organs = PARTIAL_LABEL_GROUPS[site - 1]
        cases = phantom_cases(
            phantoms, site, range(1, config.cases_per_site + 1), config.spacing_mm
        )
        annotated = [SiteCase(c.image, c.organs, frozenset(organs)) for c in cases]
        sites.append(SimSite(f"site-{site:02d}", annotated, organs))
    return sites


def _test_cases(config: SegVizConfig) -> list[SiteCase]:
    phantoms = _phantoms(config.test_seed, len(PARTIAL_LABEL_GROUPS))
    cases: list[SiteCase] = []
    for site in range(1, len(PARTIAL_LABEL_GROUPS) + 1):
        numbers = range(1, config.test_cases_per_site + 1)
        cases += phantom_cases(phantoms, site, numbers, config.spacing_mm)
    return cases


def run_setup(
    config: SegVizConfig, count: int, test: Sequence[SiteCase]
) -> dict[str, dict[str, list[float]]]:
    """Dice per method and organ for the ``count``-site set-up."""
    sites = _sites(config, count)
    organs = [o for s in sites for o in s.tasks]
    model_cfg = model_config(organs, config.filters)
    steps = config.rounds * config.local_steps
    local = LocalTraining(
        steps=config.local_steps, learning_rate=config.learning_rate, seed=config.seed
    )
    out: dict[str, dict[str, list[float]]] = {}
    single: dict[str, list[float]] = {}
    for site in sites:
        own = model_config(site.tasks, config.filters)
        model = train_pooled(
            site.cases,
            site.tasks,
            own,
            LocalTraining(steps, config.learning_rate, seed=config.seed),
            config.seed,
        )
        single.update(evaluate_heads(model, test, site.tasks))
    out["single-dataset"] = single
    pooled = [c for s in sites for c in s.cases]
    central = train_pooled(
        pooled,
        organs,
        model_cfg,
        LocalTraining(steps, config.learning_rate, seed=config.seed),
        config.seed,
    )
    out["central"] = evaluate_heads(central, test, organs)
    for method, selective in (("conventional FL", False), ("SegViz", True)):
        plan = FederatedPlan(config.rounds, local, RoundRules(selective=selective))
        model = train_federated(sites, model_cfg, plan, config.seed)
        out[method] = evaluate_heads(model, test, organs)
    return out


def run(config: SegVizConfig) -> Results:
    """Every set-up of ``config``."""
    test = _test_cases(config)
    return {count: run_setup(config, count, test) for count in config.setups}


def plot_dice(results: Results, path: Path) -> None:
    """Bar charts of mean test Dice per organ and method, one panel per set-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (count, by_method) in zip(axes[0], sorted(results.items()), strict=True):
        organs = list(by_method["SegViz"])
        width = 0.8 / len(METHODS)
        for m, method in enumerate(METHODS):
            means = [float(np.mean(by_method[method].get(o) or [0.0])) for o in organs]
            ax.bar(np.arange(len(organs)) + m * width, means, width, label=method)
        ax.set_xticks(np.arange(len(organs)) + 0.4 - width / 2, organs, rotation=30)
        ax.set_ylim(0, 1)
        ax.set_title(f"{count} sites")
        ax.set_ylabel("Dice (test set, unseen seed)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: Results, config: SegVizConfig, out_dir: Path, run_info: RunInfo) -> Path:
    """Write ``segviz.md`` and ``segviz.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_dice(results, out_dir / "segviz.png")
    sections = [(__doc__ or "").split("\n\n", 1)[1].strip()]
    sections.append(
        f"Settings: {config.rounds} rounds x {config.local_steps} local steps "
        f"(single-dataset and central: {config.rounds * config.local_steps} steps, so every "
        "head gets as many updates as in FL; central trains every head at each step), "
        f"{config.cases_per_site} training cases per site, "
        f"{config.test_cases_per_site} test cases from each of 4 phantom scanners of seed "
        f"{config.test_seed} (training seed {config.seed}), U-Net filters {config.filters}, "
        f"{config.spacing_mm} mm grid. Dice mean ± sd over test cases."
    )
    for count, by_method in sorted(results.items()):
        organs = list(by_method["SegViz"])
        rows = [[m, *(mean_sd(by_method[m].get(o, [])) for o in organs)] for m in METHODS]
        sections.append(f"## {count} sites\n\n" + table(["method", *organs], rows))
    sections.append("![Dice per organ](segviz.png)")
    return write_report(
        out_dir / "segviz.md", "SegViz: partially labelled multi-organ FL", run_info, sections
    )


def main(out_dir: Path, smoke: bool, command: str) -> Path:
    """Run and write the report; returns its path."""
    config = SMOKE if smoke else SegVizConfig()
    started = time.perf_counter()
    results = run(config)
    return write(results, config, out_dir, RunInfo(command, time.perf_counter() - started, smoke))
