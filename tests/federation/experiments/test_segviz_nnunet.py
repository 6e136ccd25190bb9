"""SegViz with federated nnU-Net: one smoke run (about 20 s on 2 cores) shared by the tests.

Its site folders come from phantom DICOM exports with RTSTRUCTs through ``dataset build``, its
models are scored as fedseg serves them (recomputed here from the served bundles), and a
second, smaller federation with a label no site contours shows that SegViz keeps that label's
output channels while conventional FL changes them.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from federation.cli import experiment_cmd
from federation.errors import FederationError
from federation.experiments import segviz_nnunet, segviz_nnunet_report
from federation.experiments.nnunet_phantoms import reference_cases
from federation.experiments.report import RunInfo
from federation.experiments.segviz_nnunet import (
    CENTRAL,
    CONVENTIONAL,
    METHODS,
    SCANNERS,
    SELECTIVE,
    SINGLE,
    SMOKE,
    Outcome,
)
from federation.nnunet.aggregation import is_output
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Mirroring
from training.metrics import dice
from training.phantoms.config import PhantomConfig, PhantomModality, Size

COMMAND = "fedseg experiment segviz --backend nnunet --smoke"


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Train on one torch thread (two threads on a shared 2-core CPU run ten times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Outcome, Path, Path]:
    """The smoke run's outcome, its report and its work folder."""
    root = tmp_path_factory.mktemp("segviz-nnunet")
    outcome = segviz_nnunet.run(SMOKE, root / "work")
    report = segviz_nnunet_report.write(outcome, root / "out", RunInfo(COMMAND, 1.0, smoke=True))
    return outcome, report, root / "work"


def test_site_folders_hold_only_each_sites_contours(smoke: tuple[Outcome, Path, Path]) -> None:
    _, _, work = smoke
    for site, organs in (("Site1", ["liver"]), ("Site2", ["spleen"])):
        (folder,) = (work / "sites").glob(f"Dataset*_{site}")
        dataset = json.loads((folder / "dataset.json").read_text())
        assert [k for k in dataset["labels"] if k != "background"] == organs
        cases = dataset["fedseg"]["cases"]
        assert len(cases) == SMOKE.cases_per_site
        assert all(c["contoured"] == organs for c in cases.values())


def test_every_method_trained_every_round(smoke: tuple[Outcome, Path, Path]) -> None:
    outcome, _, _ = smoke
    (setup,) = outcome.setups.values()
    assert setup.organs == ("liver", "spleen")
    assert set(setup.trained) == {CENTRAL, CONVENTIONAL, SELECTIVE}
    assert set(outcome.single) == {"site-01", "site-02"}
    for trained in [*setup.trained.values(), *outcome.single.values()]:
        assert trained.rejected == 0
        assert len(trained.losses) == SMOKE.rounds and np.isfinite(trained.losses).all()
        assert trained.chosen in trained.by_round
        assert trained.run is not None and all(r.aggregated for r in trained.run.rounds)
    assert outcome.looks == 1


def test_scores_are_those_of_the_served_predictions(
    smoke: tuple[Outcome, Path, Path], tmp_path: Path
) -> None:
    outcome, _, _ = smoke
    (setup,) = outcome.setups.values()
    phantoms = PhantomConfig(
        sites=len(SCANNERS),
        cases_per_site=SMOKE.test_cases_per_scanner,
        seed=SMOKE.test_seed,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        partial_labels=False,
        absent_organ_rate=0.0,
    )
    cases = reference_cases(phantoms, tmp_path, SCANNERS, [1])
    assert tuple(c.case_id for c in cases) == outcome.test_cases
    served = {
        SELECTIVE: (setup.trained[SELECTIVE].model().bundle, ("liver", "spleen")),
        SINGLE: (outcome.single["site-01"].model().bundle, ("liver",)),
    }
    for method, (path, organs) in served.items():
        bundle = ModelBundle.load(path)
        numbers = {e.name: e.number for e in bundle.manifest.label_table().labels}
        segmenter = open_segmenter(bundle, mirroring=Mirroring.OFF)  # as the experiment serves it
        for index, case in enumerate(cases):
            labels = segmenter.segment(case.volume, None, case.volume.array).labels
            for organ in organs:
                predicted = labels == numbers[organ]
                assert setup.voxels[method][organ][index] == int(predicted.sum())
                expected = dice(predicted, case.truth(organ))
                assert setup.dice[method][organ][index] == pytest.approx(expected)
    for method in METHODS:  # no method's predictions are empty
        assert sum(sum(v) for v in setup.voxels[method].values()) > 0
    # the liver site's own model has learned the liver: it overlaps the reference
    assert min(setup.dice[SINGLE]["liver"]) > 0.0


def test_report_structure(smoke: tuple[Outcome, Path, Path]) -> None:
    outcome, report_path, _ = smoke
    report = report_path.read_text()
    assert report.startswith(f"# {segviz_nnunet_report.TITLE}")
    assert (report_path.parent / "segviz-nnunet.png").stat().st_size > 1000
    assert COMMAND in report and "smoke-sized" in report
    n = len(outcome.test_cases)
    assert f"## 2 sites: test Dice ({n} phantoms, scored once)" in report
    assert "| method | liver | spleen |" in report
    for method in METHODS:
        row = next(line for line in report.splitlines() if line.startswith(f"| {method} |"))
        values = [float(v) for v in re.findall(r"(\d\.\d{3}) ±", row)]
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
        assert row.count(f"(n={n})") == 2
    assert "**Looks at the test set in this run: 1.**" in report
    for name in ("site-01", "site-02", "central, 2 sites", "SegViz, 2 sites"):
        assert f"| {name} | " in report
    assert "## Time (s)" in report


def test_segviz_keeps_the_channels_of_a_label_no_site_contours(tmp_path: Path) -> None:
    prepared = segviz_nnunet.prepare(SMOKE, tmp_path)
    labels = ("liver", "spleen", "kidney_left")  # the two sites contour liver and spleen
    setup = segviz_nnunet.train_setup(prepared, 2, labels=labels)
    channel = labels.index("kidney_left") + 1  # 0 is background
    selective, conventional = setup.trained[SELECTIVE].run, setup.trained[CONVENTIONAL].run
    assert selective is not None and conventional is not None
    outputs = [k for k in selective.arrays if is_output(k)]
    assert outputs
    for key in outputs:  # SegViz: nobody contours it, so nobody changes it
        np.testing.assert_array_equal(
            selective.arrays[key][channel], selective.initial[key][channel]
        )
    # conventional FL averages every site's channel, which the marginal loss trains
    assert any(
        not np.array_equal(conventional.arrays[k][channel], conventional.initial[k][channel])
        for k in outputs
    )
    body = "encoder.stages.0.0.convs.0.conv.weight"
    assert not np.array_equal(selective.arrays[body], selective.initial[body])


def test_cli_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, bool, str]] = []

    def fake_main(out: Path, smoke: bool, command: str) -> Path:
        calls.append((out, smoke, command))
        return out / "segviz-nnunet.md"

    monkeypatch.setattr(segviz_nnunet, "main", fake_main)
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    argv = ["experiment", "segviz", "--backend", "nnunet", "--smoke", "--out", str(tmp_path)]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    assert [(out, smoke) for out, smoke, _ in calls] == [(tmp_path, True)]
    args = parser.parse_args(["experiment", "classification", "--backend", "nnunet"])
    with pytest.raises(FederationError, match="no nnU-Net backend"):
        args.handler(args)
