"""``cross-site``: local models vs the federated model across phantom scanners and positions.

Each site (its own scanner vendor, field of view, slice thickness, noise, calibration and
patient position) labels liver, spleen and both kidneys. A *local* model is trained at every
site on its own cases; the *FL* model is FedAvg over all sites with the same local steps per
round. Every model is scored on every site's held-out patients (DSC, HD95, MSD, on the task
grid), on studies grouped by patient position (head-first supine, feet-first supine,
head-first prone; all are reoriented to LPS before the network), and on patients whose left or
right kidney was removed, where any prediction of that kidney is a false positive.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federation.experiments.report import RunInfo, mean_sd, table, write_report
from federation.local import LocalTraining, model_config, predict
from federation.simulation import FederatedPlan, SimSite, train_federated, train_pooled
from federation.sites import SiteCase, phantom_cases, prepare_case
from training.metrics.segmentation import score_label
from training.models import MultiTaskUNet
from training.phantoms import make_case
from training.phantoms.config import PhantomConfig, PhantomModality, Size
from training.phantoms.sites import draw_site

ORGANS = ("liver", "spleen", "kidney_left", "kidney_right")
KIDNEYS = ("kidney_left", "kidney_right")


@dataclass(frozen=True)
class CrossSiteConfig:
    """Size of the experiment."""

    sites: int = 3
    cases_per_site: int = 3
    test_cases_per_site: int = 2
    position_seed: int = 2
    position_sites: tuple[int, ...] = (1, 3, 5)
    nephrectomy_cases: int = 12
    rounds: int = 12
    local_steps: int = 10
    filters: tuple[int, ...] = (8, 16)
    spacing_mm: float = 12.0
    learning_rate: float = 3e-3
    seed: int = 0


SMOKE = CrossSiteConfig(
    sites=2,
    cases_per_site=1,
    test_cases_per_site=1,
    position_sites=(5,),
    nephrectomy_cases=3,
    rounds=2,
    local_steps=1,
    filters=(4, 8),
)


def _phantoms(seed: int, sites: int, absent_rate: float = 0.0) -> PhantomConfig:
    return PhantomConfig(
        sites=sites,
        seed=seed,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        partial_labels=False,
        absent_organ_rate=absent_rate,
    )


def _scores(
    model: MultiTaskUNet, cases: Sequence[SiteCase], spacing: float
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"dsc": [], "hd95": [], "msd": []}
    for case in cases:
        for organ in ORGANS:
            truth = case.target(organ).astype(bool)
            if not truth.any():
                continue
            s = score_label(predict(model, case, organ), truth, (spacing,) * 3)
            out["dsc"].append(s.dice)
            if s.distances_defined:
                out["hd95"].append(s.hd95_mm)
                out["msd"].append(s.msd_mm)
    return out


def _nephrectomy(config: CrossSiteConfig) -> list[tuple[str, SiteCase]]:
    """Cases missing one kidney, with the missing kidney's name."""
    phantoms = _phantoms(config.seed + 7, 1, absent_rate=1.0)
    out = []
    for number in range(1, 4 * config.nephrectomy_cases + 1):
        case = make_case(phantoms, 1, number)
        missing = [k for k in case.anatomy.absent if k in KIDNEYS]
        if missing and case.ct is not None:
            prepared = prepare_case(
                case.ct.hu, case.ct.grid.affine, case.ct.organs, config.spacing_mm
            )
            out.append((missing[0], prepared))
        if len(out) == config.nephrectomy_cases:
            break
    return out


def run(config: CrossSiteConfig) -> dict[str, object]:
    """Train local and FL models; score them on every test set."""
    train_cfg = _phantoms(config.seed, config.sites)
    n, t = config.cases_per_site, config.test_cases_per_site
    sites, tests = [], {}
    for site in range(1, config.sites + 1):
        cases = phantom_cases(train_cfg, site, range(1, n + 1), config.spacing_mm)
        sites.append(SimSite(f"site-{site}", cases, ORGANS))
        position = draw_site(site, config.seed, Size.TINY).patient_position
        tests[f"site-{site} ({position})"] = phantom_cases(
            train_cfg, site, range(n + 1, n + t + 1), config.spacing_mm
        )
    cfg = model_config(ORGANS, config.filters)
    local = LocalTraining(config.local_steps, config.learning_rate, seed=config.seed)
    steps = LocalTraining(
        config.rounds * config.local_steps, config.learning_rate, seed=config.seed
    )
    models = {
        f"local {s.name}": train_pooled(s.cases, ORGANS, cfg, steps, config.seed) for s in sites
    }
    models["FL"] = train_federated(sites, cfg, FederatedPlan(config.rounds, local), config.seed)
    matrix = {
        m: {site: _scores(model, cases, config.spacing_mm) for site, cases in tests.items()}
        for m, model in models.items()
    }
    position_cfg = _phantoms(config.position_seed, max(config.position_sites))
    positions: dict[str, list[SiteCase]] = {}
    for site in config.position_sites:
        position = draw_site(site, config.position_seed, Size.TINY).patient_position
        positions.setdefault(position, []).extend(
            phantom_cases(position_cfg, site, range(1, t + 1), config.spacing_mm)
        )
    by_position = {
        m: {p: _scores(model, cases, config.spacing_mm)["dsc"] for p, cases in positions.items()}
        for m, model in models.items()
    }
    nephrectomy = _nephrectomy(config)
    voxel_ml = config.spacing_mm**3 / 1000.0
    false_positive = {
        m: [float(predict(model, case, kidney).sum()) * voxel_ml for kidney, case in nephrectomy]
        for m, model in models.items()
    }
    return {"matrix": matrix, "positions": by_position, "false_positive_ml": false_positive}


def plot_matrix(matrix: Mapping[str, Mapping[str, Mapping[str, list[float]]]], path: Path) -> None:
    """Heat map of mean DSC: model (row) on test site (column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, sites = list(matrix), list(next(iter(matrix.values())))
    values = np.array([[np.mean(matrix[m][s]["dsc"] or [0.0]) for s in sites] for m in models])
    fig, ax = plt.subplots(figsize=(1.8 * len(sites) + 2, 0.6 * len(models) + 1.5))
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(sites)), sites, rotation=20)
    ax.set_yticks(range(len(models)), models)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w")
    fig.colorbar(image, label="mean DSC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(out_dir: Path, smoke: bool, command: str) -> Path:
    """Run and write ``cross-site.md`` and ``cross-site.png``."""
    config = SMOKE if smoke else CrossSiteConfig()
    started = time.perf_counter()
    result = run(config)
    seconds = time.perf_counter() - started
    matrix = result["matrix"]
    positions = result["positions"]
    false_positive = result["false_positive_ml"]
    assert (
        isinstance(matrix, dict)
        and isinstance(positions, dict)
        and isinstance(false_positive, dict)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_matrix(matrix, out_dir / "cross-site.png")
    sites = list(next(iter(matrix.values())))
    sections = [(__doc__ or "").split("\n\n", 1)[1].strip()]
    sections.append(
        f"Settings: {config.sites} training sites x {config.cases_per_site} cases, "
        f"{config.test_cases_per_site} held-out patients per site, {config.rounds} rounds x "
        f"{config.local_steps} local steps (local models: {config.rounds * config.local_steps} "
        f"steps), U-Net filters {config.filters}, {config.spacing_mm} mm grid (distances in mm on "
        "that grid). Values: mean ± sd over organs x patients."
    )
    for metric, label in (("dsc", "DSC"), ("hd95", "HD95 (mm)"), ("msd", "MSD (mm)")):
        rows = [[m, *(mean_sd(matrix[m][s][metric]) for s in sites)] for m in matrix]
        sections.append(
            f"## {label}: model (row) on test site (column)\n\n" + table(["model", *sites], rows)
        )
    position_names = sorted({p for by in positions.values() for p in by})
    rows = [[m, *(mean_sd(positions[m].get(p, [])) for p in position_names)] for m in positions]
    sections.append(
        f"## DSC by patient position (unseen sites of seed {config.position_seed})\n\n"
        + table(["model", *position_names], rows)
    )
    rows = [[m, mean_sd(v), f"{sum(x > 0 for x in v)}/{len(v)}"] for m, v in false_positive.items()]
    sections.append(
        "## Removed kidney: predicted volume of the missing kidney (false positive, mL)\n\n"
        + table(["model", "false-positive volume", "cases with any"], rows)
    )
    sections.append("![DSC matrix](cross-site.png)")
    return write_report(
        out_dir / "cross-site.md",
        "Cross-site generalisation: local models vs FL",
        RunInfo(command, seconds, smoke),
        sections,
    )
