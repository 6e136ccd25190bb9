"""The SegViz experiment's smoke run writes its report with numbers for every method."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from federation.cli import experiment_cmd
from federation.experiments.segviz import METHODS


def test_segviz_smoke_writes_report_and_plot(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "segviz", "--smoke", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    report = (tmp_path / "segviz.md").read_text()
    assert (tmp_path / "segviz.png").stat().st_size > 1000
    assert "## 2 sites" in report and "took" in report and "fedseg experiment segviz" in report
    for method in METHODS:
        row = next(line for line in report.splitlines() if line.startswith(f"| {method} |"))
        values = [float(v) for v in re.findall(r"(\d\.\d{3}) ±", row)]
        assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
