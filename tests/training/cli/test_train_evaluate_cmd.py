import json
from pathlib import Path

import numpy as np
import pytest

from service.cli.main import main
from service.nifti import write_nifti


def _site(root: Path, n: int) -> Path:
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    rng = np.random.default_rng(0)
    for c in range(n):
        labels = np.zeros((32, 32, 32), dtype=np.uint8)
        labels[10 + c : 18 + c, 12:20, 8:16] = 1
        image = (0.5 + 6.0 * labels + rng.normal(0, 0.2, labels.shape)).astype(np.float32)
        write_nifti(root / f"case-{c}" / "image.nii.gz", image, affine)
        write_nifti(root / f"case-{c}" / "label.nii.gz", labels, affine)
    return root


def test_train_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site_a, site_b = _site(tmp_path / "site-a", 2), _site(tmp_path / "site-b", 2)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--task",
            "pet-lesion",
            "--data",
            str(site_a),
            str(site_b),
            "--out",
            str(run),
            "--steps",
            "3",
            "--validate-every",
            "3",
            "--val-fraction",
            "0.5",
            "--no-progress",
        ]
    )
    assert code == 0
    split = json.loads((run / "split.json").read_text())
    assert [len(v["train"]) + len(v["val"]) for v in split.values()] == [2, 2]
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run / "best.pt"), "--data", str(site_a), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "pet-lesion" and sorted(report["cases"]) == ["case-0", "case-1"]
    lesion = report["mean"]["lesion"]
    assert 0.0 <= lesion["dice"] <= 1.0 and lesion["hd95_mm"] >= 0.0


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code = main(
        [
            "train",
            "--task",
            "pet-lesion",
            "--data",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "run"),
            "--steps",
            "1",
        ]
    )
    assert code == 2
    assert "no training cases found" in capsys.readouterr().err
