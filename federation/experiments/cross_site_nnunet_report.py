"""The report of ``fedseg experiment cross-site --backend nnunet``: cross-site-nnunet.md, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from federation.experiments import cross_site_nnunet as exp
from federation.experiments.cross_site import plot_matrix
from federation.experiments.nnunet_runs import (
    network_summary,
    refusal_note,
    validated_rounds,
    validation_cells,
)
from federation.experiments.report import RunInfo, mean_sd, table, time_section, write_report

TITLE = "Cross-site generalisation with federated nnU-Net: local models vs FL"
NAME = "cross-site-nnunet"
_METRICS = (("dsc", "DSC"), ("hd95", "HD95 (mm)"), ("msd", "MSD (mm)"))


def standing(outcome: exp.Outcome) -> str:
    """Mean DSC of each model on its own site, on the other sites, and overall."""
    lines = []
    for model, by_site in outcome.matrix.items():
        own = [
            v for site, m in by_site.items() if model.endswith(site.split(" ")[0]) for v in m["dsc"]
        ]
        other = [
            v
            for site, m in by_site.items()
            if not model.endswith(site.split(" ")[0])
            for v in m["dsc"]
        ]
        every = [v for m in by_site.values() for v in m["dsc"]]
        text = f"- **{model}**: mean DSC {np.mean(every):.3f} over every site's test patients"
        if own:
            text += f" (own site {np.mean(own):.3f}, other sites {np.mean(other):.3f})"
        lines.append(text + ".")
    return "\n".join(lines)


def _matrix_sections(outcome: exp.Outcome) -> list[str]:
    matrix = outcome.matrix
    sites = list(next(iter(matrix.values())))
    return [
        f"## {label}: model (row) on test site (column)\n\n"
        + table(
            ["model", *sites], [[m, *(mean_sd(matrix[m][s][key]) for s in sites)] for m in matrix]
        )
        for key, label in _METRICS
    ]


def _position_section(outcome: exp.Outcome) -> str:
    positions = outcome.positions
    names = sorted({p for by in positions.values() for p in by})
    rows = [[m, *(mean_sd(positions[m].get(p, [])) for p in names)] for m in positions]
    return (
        f"## DSC by patient position (unseen scanners of seed {outcome.config.position_seed})"
        "\n\n" + table(["model", *names], rows)
    )


def _nephrectomy_section(outcome: exp.Outcome) -> str:
    rows = [
        [m, mean_sd(v), f"{sum(x > 0 for x in v)}/{len(v)}"]
        for m, v in outcome.false_positive_ml.items()
    ]
    return (
        "## Removed kidney: predicted volume of the missing kidney (false positive, mL)\n\n"
        + table(["model", "false-positive volume", "cases with any"], rows)
    )


def _validation_section(outcome: exp.Outcome) -> str:
    rounds = validated_rounds(outcome.trained.values())
    rows = []
    for name, t in outcome.trained.items():
        cells = validation_cells(t, rounds)
        rows.append(
            [
                name,
                *cells,
                str(t.chosen),
                f"{t.losses[-1]:.3f}",
                str(t.rejected),
                f"{t.seconds:.0f}",
            ]
        )
    header = ["model", *(f"round {r}" for r in rounds)]
    header += ["chosen round", "last train loss", "rejected updates", "seconds"]
    return (
        "## Validation (mean Dice; chooses the round)\n\n"
        + table(header, rows)
        + refusal_note(outcome.trained.values())
        + "\n\nA local model is validated on its own site's validation cases, FL on every site's."
    )


def _settings_section(outcome: exp.Outcome) -> str:
    config = outcome.config
    planned, used = network_summary(outcome.planned), network_summary(outcome.shared)
    local = ", ".join(
        f"{name} {network_summary(p)['spacing']}" for name, p in outcome.local_plans.items()
    )
    steps = config.rounds * config.iterations
    return "\n".join(
        [
            "## Settings",
            "",
            f"- Phantoms (seed {config.seed}, tiny size: 32 × 32 × 20 voxels of about 12 mm): "
            f"{config.sites} sites × {config.cases_per_site} training cases, "
            f"{config.validation_cases_per_site} validation and {config.test_cases_per_site} "
            f"test cases per site; position test: {config.test_cases_per_site} cases of each of "
            f"the scanners {list(config.position_sites)} of seed {config.position_seed}; "
            f"{len(next(iter(outcome.false_positive_ml.values())))} nephrectomy cases of seed "
            f"{config.seed + 7}. The centres contour {', '.join(exp.ORGANS)} (their RTSTRUCTs "
            "hold nothing else); DSC, HD95 and MSD are pooled over organs × patients.",
            f"- Plans (FL): nnU-Net's `ExperimentPlanner` on the pooled fingerprint planned "
            f"3d_fullres with spacing {planned['spacing']} mm (x × y × z), patch "
            f"{planned['patch']}, features {planned['features']} ({planned['convolutions']} "
            f"convolutions per stage), batch {planned['batch']}, CT normalisation.",
            f"- Trained network (shrunk for 2 CPU cores): features {used['features']} "
            f"({used['convolutions']} convolutions per stage, 3³ kernels), patch "
            f"{used['patch']} voxels, batch {used['batch']}; spacing and normalisation as "
            f"planned. Local models plan on their own fingerprint: spacing {local}.",
            f"- Steps: {config.rounds} rounds × {config.iterations} nnU-Net iterations per site "
            f"and round ({steps} per site; a local model the same). nnU-Net's trainer: SGD "
            f"(Nesterov, momentum 0.99), initial learning rate {config.initial_lr:g} (chosen on "
            "the segviz nnU-Net experiment's validation phantoms), poly decay over all rounds, "
            "deep supervision, its augmentation; FedAvg weighted by cases through the round "
            "step (update checks on, every site in every round).",
            f"- Validation every {config.validate_every} rounds (and after the last) through "
            "the served path; the best round is kept. Nothing was chosen on the test cases. "
            f"**Looks at the test cases in this run: {outcome.looks}.** " + exp.PILOTS,
            "- Inference: nnU-Net model folder → `import_model` (ONNX, parity checked) → "
            "bundle → the service's nnU-Net segmenter (onnxruntime, 1 thread, no test-time "
            "mirroring) on the source CT grid; distances in mm on that grid.",
        ]
    )


def write(outcome: exp.Outcome, out_dir: Path, run: RunInfo) -> Path:
    """Write ``cross-site-nnunet.md`` and ``cross-site-nnunet.png`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_matrix(outcome.matrix, out_dir / f"{NAME}.png")
    sections = [
        (exp.__doc__ or "").split("\n\n", 1)[1].strip(),
        "## Where it stands\n\n" + standing(outcome),
        *_matrix_sections(outcome),
        _position_section(outcome),
        _nephrectomy_section(outcome),
        f"![DSC matrix]({NAME}.png)",
        _validation_section(outcome),
        _settings_section(outcome),
        time_section(outcome.seconds),
    ]
    return write_report(out_dir / f"{NAME}.md", TITLE, run, sections)
