"""``pet``: FDG-PET tumour segmentation on real sts-pet data, centralised vs federated.

The 40 sts-pet patients (TCIA Soft-tissue-Sarcoma, Vallières et al. 2015, CC BY 3.0, via the
IBSI validation set) are dealt into three simulated sites; inside each site a seeded 80/20
patient split gives training and test patients. *Centralised* trains one model on the pooled
training patients; *FL* runs FedAvg over the three sites with the same total number of local
steps. Both predict every test patient on the source PET grid, where Dice, Jaccard and the
relative error (RE%) of SUVmax, SUVmean, SUVmedian, SUVpeak, MTV and TLG against the reference
mask are computed with the service's PET measures. Methods are compared with the paired
Wilcoxon signed-rank test (|RE| for the relative errors).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from federation.experiments.pet_common import (
    METRICS,
    SiteSplit,
    comparison_rows,
    plot_dice,
    score,
    site_split,
)
from federation.experiments.report import RunInfo, table, write_report
from federation.local import LocalTraining, model_config, predict
from federation.simulation import FederatedPlan, SimSite, train_federated, train_pooled
from federation.sites import SiteCase
from service.imaging.resample import Grid, resample_labels
from training.data.cases import Case, discover_cases, load_case
from training.data.preprocess import Prepared, prepare
from training.models import MultiTaskUNet
from training.tasks import TaskName, get_task

HEAD = "lesion"
METHODS = ("centralised", "FL")


@dataclass(frozen=True)
class PetConfig:
    """Size of the experiment."""

    split: SiteSplit = field(default_factory=SiteSplit)
    rounds: int = 12
    local_steps: int = 8
    filters: tuple[int, ...] = (8, 16, 32)
    learning_rate: float = 3e-3
    seed: int = 0


SMOKE = PetConfig(
    split=SiteSplit(patients=9, test_fraction=0.34), rounds=2, local_steps=1, filters=(4, 8)
)


def _site_case(prepared: Prepared) -> SiteCase:
    assert prepared.labels is not None
    return SiteCase(prepared.image, (prepared.labels > 0).astype(np.int64), values={HEAD: 1})


def _scores(model: MultiTaskUNet, case: Case, prepared: Prepared) -> dict[str, float]:
    pred = predict(model, _site_case(prepared), HEAD).astype(np.int16)
    source = Grid(shape=case.image.shape, affine=case.affine)
    mask = resample_labels(pred, prepared.grid, source) > 0
    assert case.labels is not None
    return score(case.image, case.affine, mask, case.labels > 0)


def run(
    data: Path, config: PetConfig
) -> tuple[dict[str, dict[str, list[float]]], list[dict[str, list[str]]]]:
    """Per-method metric lists over test patients, and the split."""
    task = dataclasses.replace(get_task(TaskName.PET_LESION), patch_size=(16, 16, 16))
    sources = {s.case_id: s for s in discover_cases(data)}
    splits = site_split(list(sources), config.split)
    wanted = sorted({p for s in splits for part in s.values() for p in part})
    cases = {cid: load_case(sources[cid], modality="PT") for cid in wanted}
    prepared = {cid: prepare(c.image, c.affine, c.labels, task) for cid, c in cases.items()}
    sites = [
        SimSite(f"site-{i + 1}", [_site_case(prepared[c]) for c in s["train"]], (HEAD,))
        for i, s in enumerate(splits)
    ]
    cfg = model_config([HEAD], config.filters)
    local = LocalTraining(config.local_steps, config.learning_rate, seed=config.seed)
    pooled_steps = config.rounds * config.local_steps * config.split.sites
    models = {
        "centralised": train_pooled(
            [c for s in sites for c in s.cases],
            [HEAD],
            cfg,
            dataclasses.replace(local, steps=pooled_steps),
            config.seed,
        ),
        "FL": train_federated(sites, cfg, FederatedPlan(config.rounds, local), config.seed),
    }
    results: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in METHODS}
    for cid in (p for s in splits for p in s["test"]):
        for method, model in models.items():
            for key, value in _scores(model, cases[cid], prepared[cid]).items():
                results[method][key].append(value)
    return results, splits


def main(out_dir: Path, smoke: bool, command: str, data: Path) -> Path:
    """Run and write ``pet.md`` and ``pet.png``."""
    config = SMOKE if smoke else PetConfig()
    started = time.perf_counter()
    results, split = run(data, config)
    seconds = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_dice(
        results["centralised"]["dice"],
        results["FL"]["dice"],
        ("Dice, centralised", "Dice, FL (3 sites)"),
        "sts-pet test patients",
        out_dir / "pet.png",
    )
    rows = comparison_rows(results, METHODS, [METHODS])
    sites = "; ".join(
        f"site-{i + 1}: train {len(s['train'])}, test {len(s['test'])}" for i, s in enumerate(split)
    )
    sections = [
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        f"Split (seed {config.split.seed}): {sites}. {config.rounds} rounds x "
        f"{config.local_steps} local steps (centralised: "
        f"{config.rounds * config.local_steps * config.split.sites} steps), "
        f"U-Net filters {config.filters}, whole volumes on the 4 mm task grid.",
        table(["metric", *METHODS, "Wilcoxon p"], rows),
        "![Dice per test patient](pet.png)",
    ]
    run_info = RunInfo(command, seconds, smoke)
    return write_report(
        out_dir / "pet.md", "PET tumour segmentation: centralised vs FL", run_info, sections
    )
