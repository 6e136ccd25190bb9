"""The classification experiment: tumour cubes and the smoke report with AUC and DeLong p."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from federation.cli import experiment_cmd
from federation.experiments.classification import CUBE, SMOKE, lesions


def test_cubes_are_centred_on_the_tumour() -> None:
    data = lesions(SMOKE, 1, [1, 2])
    assert data.cubes.shape == (2, 1, CUBE, CUBE, CUBE)
    assert set(data.labels.tolist()) <= {0, 1}
    # z-scored MR: the tumour at the centre differs from the cube's mean intensity
    centre = data.cubes[:, 0, CUBE // 2, CUBE // 2, CUBE // 2]
    assert np.all(np.isfinite(centre)) and not np.allclose(data.cubes.std(axis=(1, 2, 3, 4)), 0)


def test_classification_smoke_report(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "classification", "--smoke", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    report = (tmp_path / "classification.md").read_text()
    assert (tmp_path / "classification.png").exists()
    assert "| centralised |" in report and "| FL |" in report
    # The smoke test set (sites 1-2, cases 4-6 of seed 0) holds 2 malignant and 4 benign.
    assert "(2 malignant of 6)" in report
    aucs = re.findall(r"\| (?:centralised|FL) \| (\d\.\d{3}) \|", report)
    assert len(aucs) == 2 and all(0 <= float(a) <= 1 for a in aucs)
    assert re.search(r"DeLong p \(centralised vs FL\): \*\*\d\.\d{3}\*\*", report)
