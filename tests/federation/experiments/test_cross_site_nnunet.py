"""Cross-site with federated nnU-Net: one smoke run (about 20 s on 2 cores) shared by the tests.

Its scores are recomputed here from the served bundles on regenerated test cases, so they are
what fedseg serves; the report is checked for every table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from federation.experiments import cross_site_nnunet, cross_site_nnunet_report
from federation.experiments.cross_site_nnunet import FL, KIDNEYS, ORGANS, SMOKE, Outcome
from federation.experiments.report import RunInfo
from service.dicom.geometry import voxel_spacing, voxel_volume_ml
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Mirroring
from training.metrics.segmentation import score_label

COMMAND = "fedseg experiment cross-site --backend nnunet --smoke"
MODELS = ("local site-1", "local site-2", FL)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one torch thread (two threads on a shared 2-core CPU run ten times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, Path]:
    """The smoke run's outcome and its report."""
    root = tmp_path_factory.mktemp("cross-site-nnunet")
    outcome = cross_site_nnunet.run(SMOKE, root / "work")
    run = RunInfo(COMMAND, 1.0, smoke=True)
    return outcome, cross_site_nnunet_report.write(outcome, root / "out", run)


def test_every_model_trained_every_round(smoke: tuple[Outcome, Path]) -> None:
    outcome, _ = smoke
    assert tuple(outcome.trained) == MODELS
    for trained in outcome.trained.values():
        assert trained.rejected == 0 and trained.chosen in trained.by_round
        assert len(trained.losses) == SMOKE.rounds and np.isfinite(trained.losses).all()
    fl = outcome.trained[FL].run
    assert fl is not None
    assert all(r.accepted == ("site-1", "site-2") and r.aggregated for r in fl.rounds)
    assert outcome.looks == 1


def test_scores_are_those_of_the_served_predictions(
    smoke: tuple[Outcome, Path], tmp_path: Path
) -> None:
    outcome, _ = smoke
    held_out = cross_site_nnunet.held_out_cases(SMOKE, tmp_path)
    assert list(outcome.matrix[FL]) == list(held_out.sites)
    assert len(held_out.nephrectomy) == SMOKE.nephrectomy_cases
    bundle = ModelBundle.load(outcome.trained[FL].model().bundle)
    numbers = {e.name: e.number for e in bundle.manifest.label_table().labels}
    segmenter = open_segmenter(bundle, mirroring=Mirroring.OFF)  # as the experiment serves it
    predicted = 0
    for site, cases in held_out.sites.items():
        dsc: list[float] = []
        for case in cases:
            labels = segmenter.segment(case.volume, None, case.volume.array).labels
            for organ in ORGANS:
                mask = labels == numbers[organ]
                predicted += int(mask.sum())
                s = score_label(mask, case.truth(organ), voxel_spacing(case.volume.affine))
                dsc.append(s.dice)
        assert outcome.matrix[FL][site]["dsc"] == pytest.approx(dsc)
    assert predicted > 0  # the federated model's predictions are not empty
    for index, (kidney, case) in enumerate(held_out.nephrectomy):
        assert kidney in KIDNEYS and kidney in case.absent_organs
        assert not case.truth(kidney).any()
        labels = segmenter.segment(case.volume, None, case.volume.array).labels
        volume = float((labels == numbers[kidney]).sum()) * voxel_volume_ml(case.volume.affine)
        assert outcome.false_positive_ml[FL][index] == pytest.approx(volume)


def test_report_structure(smoke: tuple[Outcome, Path]) -> None:
    outcome, path = smoke
    report = path.read_text()
    assert report.startswith(f"# {cross_site_nnunet_report.TITLE}")
    assert (path.parent / "cross-site-nnunet.png").stat().st_size > 1000
    assert COMMAND in report and "smoke-sized" in report
    sites = list(outcome.matrix[FL])
    for label in ("DSC", "HD95 (mm)", "MSD (mm)"):
        heading = f"## {label}: model (row) on test site (column)"
        block = report.split(heading, 1)[1].split("\n\n")[1]
        assert block.splitlines()[0] == "| " + " | ".join(["model", *sites]) + " |"
        rows = block.splitlines()[2:]
        assert [r.split(" | ")[0].lstrip("| ") for r in rows] == list(MODELS)
    dsc_rows = report.split("## DSC: model", 1)[1].split("## HD95")[0]
    values = [float(v) for v in re.findall(r"(\d\.\d{3}) ±", dsc_rows)]
    assert len(values) == len(MODELS) * len(sites) and all(0 <= v <= 1 for v in values)
    assert "## DSC by patient position" in report
    assert "## Removed kidney" in report
    assert f"| {FL} | " in report.split("## Removed kidney", 1)[1]
    assert "**Looks at the test cases in this run: 1.**" in report
