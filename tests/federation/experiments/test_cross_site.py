"""The cross-site experiment's smoke run: matrix, positions and nephrectomy false positives."""

from __future__ import annotations

import argparse
from pathlib import Path

from federation.cli import experiment_cmd


def test_cross_site_smoke_report(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "cross-site", "--smoke", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    report = (tmp_path / "cross-site.md").read_text()
    assert (tmp_path / "cross-site.png").exists()
    for heading in ("## DSC", "## HD95", "## MSD", "by patient position", "Removed kidney"):
        assert heading in report
    for model in ("local site-1", "local site-2", "FL"):
        assert f"| {model} |" in report
    # The smoke set-up's position test uses site 5 of seed 2, a feet-first study.
    assert "FFS" in report
    fp_rows = [line for line in report.splitlines() if line.endswith("/3 |")]
    assert len(fp_rows) == 3
