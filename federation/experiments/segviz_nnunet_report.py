"""The report of ``fedseg experiment segviz --backend nnunet``: segviz-nnunet.md and its plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from federation.experiments import segviz_nnunet as exp
from federation.experiments.nnunet_runs import (
    ValidatedRun,
    network_summary,
    refusal_note,
    validated_rounds,
    validation_cells,
)
from federation.experiments.report import RunInfo, mean_sd, table, time_section, write_report
from federation.experiments.segviz import plot_dice

TITLE = "SegViz with federated nnU-Net: partially labelled multi-organ FL"
NAME = "segviz-nnunet"


def _means(setup: exp.Setup) -> list[str]:
    """One row per method: mean Dice over organs x test cases."""
    rows = []
    for method in exp.METHODS:
        values = [v for organ in setup.organs for v in setup.dice[method][organ]]
        rows.append(f"{method} {np.mean(values):.3f}")
    return rows


def standing(outcome: exp.Outcome) -> str:
    """Mean test Dice per method and set-up, and SegViz against conventional FL."""
    lines = []
    for sites, setup in sorted(outcome.setups.items()):
        per_organ = [
            np.mean(setup.dice[exp.SELECTIVE][o]) - np.mean(setup.dice[exp.CONVENTIONAL][o])
            for o in setup.organs
        ]
        better = sum(d > 0 for d in per_organ)
        lines.append(
            f"- **{sites} sites** (mean Dice over organs and test cases): "
            + "; ".join(_means(setup))
            + f". SegViz is above conventional FL on {better} of {len(setup.organs)} organs."
        )
    return "\n".join(lines)


def _results_sections(outcome: exp.Outcome) -> list[str]:
    sections = []
    n = len(outcome.test_cases)
    for sites, setup in sorted(outcome.setups.items()):
        rows = [[m, *(mean_sd(setup.dice[m][o]) for o in setup.organs)] for m in exp.METHODS]
        voxels = [
            [m, *(f"{np.mean(setup.voxels[m][o]):.0f}" for o in setup.organs)] for m in exp.METHODS
        ]
        sections.append(
            f"## {sites} sites: test Dice ({n} phantoms, scored once)\n\n"
            + table(["method", *setup.organs], rows)
            + "\n\nMean predicted voxels per test case:\n\n"
            + table(["method", *setup.organs], voxels)
        )
    return sections


def _validation_row(name: str, trained: ValidatedRun, rounds: list[int]) -> list[str]:
    return [
        name,
        *validation_cells(trained, rounds),
        str(trained.chosen),
        f"{trained.losses[-1]:.3f}",
        str(trained.rejected),
        f"{trained.seconds:.0f}",
    ]


def _validation_section(outcome: exp.Outcome) -> str:
    runs = {name: t for name, t in outcome.single.items()}
    runs |= {
        f"{method}, {sites} sites": t
        for sites, setup in sorted(outcome.setups.items())
        for method, t in setup.trained.items()
    }
    rounds = validated_rounds(runs.values())
    header = ["model", *(f"round {r}" for r in rounds)]
    header += ["chosen round", "last train loss", "rejected updates", "seconds"]
    rows = [_validation_row(name, t, rounds) for name, t in runs.items()]
    return (
        "## Validation (mean Dice over the model's organs; chooses the round)\n\n"
        + table(header, rows)
        + refusal_note(runs.values())
        + "\n\nA single-dataset model is validated on its own site's organs."
    )


def _settings_section(outcome: exp.Outcome) -> str:
    config = outcome.config
    largest = outcome.setups[max(outcome.setups)]
    planned, used = network_summary(largest.planned), network_summary(largest.shared)
    steps = config.rounds * config.iterations
    spacings = ", ".join(
        f"{sites} sites {network_summary(s.shared)['spacing']}"
        for sites, s in sorted(outcome.setups.items())
    )
    single = ", ".join(
        f"{name} {network_summary(p)['spacing']}" for name, p in outcome.single_plans.items()
    )
    return "\n".join(
        [
            "## Settings",
            "",
            f"- Phantoms: {config.cases_per_site} training CTs per site (seed {config.seed}, "
            "tiny size: 32 × 32 × 20 voxels of about 12 × 12 × 14 mm); validation: "
            f"{config.validation_cases_per_scanner} per phantom scanner of seed "
            f"{config.validation_seed}; test: {config.test_cases_per_scanner} per phantom "
            f"scanner of seed {config.test_seed} ({len(outcome.test_cases)} cases, every organ "
            "labelled).",
            f"- Plans ({max(outcome.setups)} sites): nnU-Net's `ExperimentPlanner` on the "
            f"pooled fingerprint planned 3d_fullres with spacing {planned['spacing']} mm "
            f"(x × y × z), patch {planned['patch']}, features {planned['features']} "
            f"({planned['convolutions']} convolutions per stage), batch {planned['batch']}, "
            "CT normalisation.",
            f"- Trained network (shrunk for 2 CPU cores): features {used['features']} "
            f"({used['convolutions']} convolutions per stage, 3³ kernels), patch {used['patch']} "
            f"voxels, batch {used['batch']}; spacing and normalisation as planned. Target "
            f"spacings (mm): {spacings}; single-dataset: {single}.",
            f"- Steps: {config.rounds} rounds x {config.iterations} nnU-Net iterations per site "
            f"and round ({steps} per site; single-dataset the same). Central: "
            f"{config.iterations} x sites iterations per round (as many as the sites "
            "together). nnU-Net's trainer: SGD (Nesterov, momentum 0.99), initial learning "
            f"rate {config.initial_lr:g}, poly decay over all rounds, deep supervision, its "
            "augmentation. Loss: nnUNetTrainerMarginal (central, SegViz, and conventional FL "
            f"with `conventional_loss` = {config.conventional_loss}); single-dataset sites lack "
            "no label, so the same loss is nnU-Net's own. FedAvg weighted by cases through the "
            "round step (update checks on, at least every site of the set-up per round).",
            f"- Validation every {config.validate_every} rounds (and after the last) through "
            "the served path; the best round is kept. Nothing was chosen on the test "
            f"phantoms. **Looks at the test set in this run: {outcome.looks}.** " + exp.PILOTS,
            "- Inference (validation and test): nnU-Net model folder → `import_model` (ONNX, "
            "parity checked) → bundle → the service's nnU-Net segmenter (onnxruntime, 1 thread, "
            "no test-time mirroring) on the source CT grid.",
        ]
    )


def write(outcome: exp.Outcome, out_dir: Path, run: RunInfo) -> Path:
    """Write ``segviz-nnunet.md`` and ``segviz-nnunet.png`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_dice({n: s.dice for n, s in outcome.setups.items()}, out_dir / f"{NAME}.png")
    sections = [
        (exp.__doc__ or "").split("\n\n", 1)[1].strip(),
        "## Where it stands\n\n" + standing(outcome),
        *_results_sections(outcome),
        f"![Dice per organ]({NAME}.png)",
        _validation_section(outcome),
        _settings_section(outcome),
        time_section(outcome.seconds),
    ]
    return write_report(out_dir / f"{NAME}.md", TITLE, run, sections)
