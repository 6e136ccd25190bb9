"""The PET experiment's smoke run on real sts-pet patients."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from federation.cli import experiment_cmd
from federation.experiments.pet_common import SiteSplit, site_split


def test_site_split_is_patient_level_and_disjoint() -> None:
    ids = [f"STS_{i:03d}" for i in range(1, 41)]
    splits = site_split(ids, SiteSplit())
    every = [p for s in splits for part in s.values() for p in part]
    assert sorted(every) == ids  # each patient in exactly one site and one part
    assert [len(s["test"]) for s in splits] == [3, 3, 3]
    assert [len(s["train"]) for s in splits] == [11, 10, 10]


def test_pet_smoke_report(data_dir: Callable[[str], Path], tmp_path: Path) -> None:
    root = data_dir("sts-pet").parent
    parser = argparse.ArgumentParser(prog="fedseg")
    experiment_cmd.register(parser.add_subparsers(dest="command"))
    argv = ["experiment", "pet", "--smoke", "--out", str(tmp_path), "--data", str(root)]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    report = (tmp_path / "pet.md").read_text()
    assert (tmp_path / "pet.png").exists()
    for metric in ("dice", "jaccard", "re_suv_max", "re_suv_peak", "re_mtv_ml", "re_tlg"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {metric} |"))
        assert len(re.findall(r"\(n=3\)", row)) == 2
        p_value = float(row.rstrip(" |").rsplit("|", 1)[1])
        assert 0.0 <= p_value <= 1.0
