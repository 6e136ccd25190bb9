"""The report of ``fedseg experiment pet --backend nnunet``: ``pet-nnunet.md`` and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from federation.experiments import pet_nnunet as exp
from federation.experiments.pet_common import Results, comparison_rows, p_value, plot_dice
from federation.experiments.report import RunInfo, mean_sd, table, time_section, write_report
from training.nnunet.federated_plans import SharedPlans

TITLE = "PET tumour segmentation with federated nnU-Net: federated vs centralised vs local"
#: Seed study S0: PET head-and-neck tumour, federated vs centralised Dice.
SEED_DICE = 0.84
#: Issue #16's target for the shipped model: test Dice, and above SUV ≥ 2.5 with p < 0.05.
TARGET_DICE = 0.75
ALPHA = 0.05


def _xyz(values: Sequence[float], plans: dict[str, Any]) -> str:
    """nnU-Net's (transposed, SimpleITK-order) axis values as ``x × y × z``."""
    order = plans["transpose_forward"]
    sitk = [0.0] * 3
    for axis, value in zip(order, values, strict=True):
        sitk[axis] = float(value)
    return " × ".join(f"{v:g}" for v in reversed(sitk))


def _network(shared: SharedPlans) -> tuple[str, str, str, int]:
    plans = shared.plans
    config = plans["configurations"]["3d_fullres"]
    arch = config["architecture"]["arch_kwargs"]
    return (
        _xyz(config["spacing"], plans),
        _xyz(config["patch_size"], plans),
        "-".join(str(f) for f in arch["features_per_stage"]),
        int(config["batch_size"]),
    )


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values))


def _versus(results: Results, a: str, b: str) -> str:
    mean_a, mean_b = _mean(results[a]["dice"]), _mean(results[b]["dice"])
    p = float(p_value(results, a, b, "dice"))
    if p >= ALPHA:
        verdict = "not significantly different from"
    else:
        verdict = "significantly above" if mean_a > mean_b else "significantly below"
    return f"{a} ({mean_a:.3f}) is {verdict} {b} ({mean_b:.3f}; paired Wilcoxon p = {p:.3f})"


def standing(outcome: exp.Outcome) -> str:
    """Where the result stands: the seed's 0.84, SUV ≥ 2.5 and the issue's target."""
    results = outcome.test.results
    n = len(outcome.test.patients)
    fed, cen = _mean(results[exp.FEDERATED]["dice"]), _mean(results[exp.CENTRALISED]["dice"])
    met = [
        m
        for m in (exp.FEDERATED, exp.CENTRALISED, exp.LOCAL)
        if _mean(results[m]["dice"]) >= TARGET_DICE
        and _mean(results[m]["dice"]) > _mean(results[exp.THRESHOLD]["dice"])
        and float(p_value(results, m, exp.THRESHOLD, "dice")) < ALPHA
    ]
    return "\n".join(
        [
            f"- **Seed study S0** (PET head and neck, federated vs centralised Dice {SEED_DICE} vs "
            f"{SEED_DICE}): here federated {fed:.3f} and centralised {cen:.3f} on {n} sarcoma "
            f"test patients, {fed - SEED_DICE:+.3f} and {cen - SEED_DICE:+.3f} from "
            f"{SEED_DICE}. Data set, network size and training length differ from the seed's, "
            "so this is no like-for-like replication.",
            "- **SUV ≥ 2.5** on the same test patients: "
            f"{_versus(results, exp.FEDERATED, exp.THRESHOLD)}; "
            f"{_versus(results, exp.CENTRALISED, exp.THRESHOLD)}.",
            f"- **Issue #16's target** (test Dice ≥ {TARGET_DICE} and above SUV ≥ 2.5 with "
            f"p < {ALPHA}): " + (f"met by {', '.join(met)}." if met else "met by no method."),
            f"- **Federated vs centralised**: {_versus(results, exp.FEDERATED, exp.CENTRALISED)}.",
        ]
    )


def _split_section(outcome: exp.Outcome) -> str:
    rows = [
        [
            s.name,
            f"{len(s.train)} ({outcome.site_cases[s.name]} cases built)",
            f"{len(s.validation)}: {', '.join(s.validation)}",
            f"{len(s.test)}: {', '.join(s.test)}",
        ]
        for s in outcome.sites
    ]
    config = outcome.config
    return (
        f"## Split (seed {config.split.seed})\n\n"
        + table(["site", "training", "validation", "test"], rows)
        + f"\n\nThe centralised site's folder holds {outcome.site_cases['pooled']} cases (every "
        "training patient). Validation patients are a seeded "
        f"{config.validation_fraction:.0%} of each site's training patients; they never train. "
        f"**Looks at the test split in this run: {outcome.looks}** — the test patients are "
        "opened once, after every model's round was chosen on validation patients; the "
        "experiment's size (rounds, iterations, network) was fixed from the CPU budget before "
        "the run."
    )


def _plans_section(outcome: exp.Outcome) -> str:
    config = outcome.config
    planned, used = _network(outcome.planned), _network(outcome.shared)
    sites = len(outcome.sites)
    total = config.rounds * config.iterations * sites
    return "\n".join(
        [
            "## Plans and training",
            "",
            f"- nnU-Net's `ExperimentPlanner` on the pooled fingerprint of the {sites} sites "
            f"(intensity bins {exp.BINS.intensity:g} SUV: percentiles within "
            f"{exp.BINS.intensity / 2:g} SUV; {config.foreground_samples:.0e} foreground "
            f"samples): 3d_fullres, spacing {planned[0]} mm (x × y × z), patch {planned[1]}, "
            f"features {planned[2]}, batch {planned[3]}, z-score normalisation per image.",
            f"- Trained network (shrunk for 2 CPU cores): features {used[2]} (one 3³ "
            f"convolution per stage), patch {used[1]} voxels, batch {used[3]}; spacing "
            f"{used[0]} mm and normalisation as planned. The same plans for every method.",
            f"- Steps: {config.rounds} rounds. Federated: {sites} sites × {config.iterations} "
            f"iterations per round ({total} in all). Centralised: one site × "
            f"{config.iterations * sites} iterations per round ({total}). Local: one site × "
            f"{config.iterations} per round ({config.rounds * config.iterations} per site). "
            f"nnU-Net's trainer: SGD (Nesterov), initial learning rate {config.initial_lr:g}, "
            "poly decay over all rounds, deep supervision, its augmentation; FedAvg weighted by "
            "cases through the round step.",
            f"- Validation every {config.validate_every} rounds (and after the last) through the "
            "served path; the best round is kept.",
            "- Inference (validation and test): nnU-Net model folder → `import_model` → "
            "bundle → the service's `NnunetSegmenter` (onnxruntime, 1 thread, no "
            "test-time mirroring) on the source PET grid.",
        ]
    )


def _validation_section(outcome: exp.Outcome) -> str:
    rounds = sorted({r for t in outcome.trained.values() for r in t.by_round})
    rows = []
    for name, trained in outcome.trained.items():
        cells = [f"{trained.by_round[r]:.3f}" if r in trained.by_round else "–" for r in rounds]
        rows.append(
            [
                name,
                str(len(trained.validation)),
                *cells,
                str(trained.chosen),
                f"{trained.validation_dice:.3f}",
                f"{trained.losses[-1]:.3f}",
                str(trained.rejected),
            ]
        )
    header = ["model", "val. patients", *(f"round {r}" for r in rounds)]
    header += ["chosen round", "val. Dice (chosen)", "last train loss", "rejected updates"]
    return "## Validation (mean Dice; chooses the round)\n\n" + table(header, rows)


def _per_patient_section(outcome: exp.Outcome) -> str:
    scores = outcome.test.results
    rows = [
        [patient, outcome.test.site_of[patient]]
        + [f"{scores[m]['dice'][i]:.3f}" for m in exp.METHODS]
        for i, patient in enumerate(outcome.test.patients)
    ]
    everywhere = []
    for site in outcome.sites:
        values = outcome.test.local_everywhere[site.name]
        own = [
            d
            for p, d in zip(outcome.test.patients, values, strict=True)
            if outcome.test.site_of[p] == site.name
        ]
        everywhere.append([exp.local_name(site.name), mean_sd(own), mean_sd(values)])
    return (
        "## Dice per test patient\n\n"
        + table(["patient", "site", *exp.METHODS], rows)
        + "\n\n*local* is the patient's own site's model. Each local model on its own site's "
        "test patients and on every test patient (Dice):\n\n"
        + table(["model", "own site's test patients", "every test patient"], everywhere)
    )


def write(outcome: exp.Outcome, out_dir: Path, run: RunInfo) -> Path:
    """Write ``pet-nnunet.md`` and ``pet-nnunet.png`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = outcome.test.results
    plot_dice(
        results[exp.CENTRALISED]["dice"],
        results[exp.FEDERATED]["dice"],
        ("Dice, centralised nnU-Net", f"Dice, federated nnU-Net ({len(outcome.sites)} sites)"),
        "sts-pet test patients",
        out_dir / "pet-nnunet.png",
    )
    header = ["metric", *exp.METHODS, *(f"p {a} vs {b}" for a, b in exp.PAIRS)]
    n = len(outcome.test.patients)
    sections = [
        (exp.__doc__ or "").split("\n\n", 1)[1].strip(),
        "## Where it stands\n\n" + standing(outcome),
        f"## Test results ({n} patients, scored once)\n\n"
        + table(header, comparison_rows(results, exp.METHODS, exp.PAIRS))
        + "\n\nmean ± sd; relative errors in %; p: paired Wilcoxon (|RE| for relative errors).",
        "![Dice per test patient](pet-nnunet.png)",
        _validation_section(outcome),
        _per_patient_section(outcome),
        _split_section(outcome),
        _plans_section(outcome),
        time_section(outcome.seconds),
    ]
    return write_report(out_dir / "pet-nnunet.md", TITLE, run, sections)
