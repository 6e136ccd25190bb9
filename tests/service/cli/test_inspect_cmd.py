"""``fedseg inspect`` on a gantry-tilted series: the row describes the grid the volume gets."""

from __future__ import annotations

import re
from pathlib import Path

from service.cli.main import main
from service.dicom.volume import discover, load_volume


def test_tilted_row_and_warning_agree_on_the_slice_spacing(data_root: Path) -> None:
    series = data_root / "ct-gantry-tilt-ge"
    (plan,) = discover([series]).plans
    row = plan.describe()
    (resampled,) = [w for w in row["warnings"] if "resampled" in w]  # type: ignore[attr-defined]
    stated = float(re.search(r"at ([\d.]+) mm", resampled).group(1))  # type: ignore[union-attr]
    assert round(row["spacing_mm"][2], 2) == stated  # type: ignore[index]
    volume = load_volume(plan)
    assert row["shape"] == list(volume.array.shape)
    assert main(["inspect", str(series)]) == 0
