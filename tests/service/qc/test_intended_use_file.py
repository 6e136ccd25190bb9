"""``--intended-use FILE`` of ``fedseg export`` and ``fedseg import nnunet``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.errors import ModelBundleError
from service.qc.intended_use import read_intended_use


def test_a_valid_file_reads(tmp_path: Path) -> None:
    path = tmp_path / "use.json"
    block = {
        "modality": "CT",
        "statement": "adult abdominal CT",
        "body_regions": ["abdomen"],
        "training_data": {"kind": "real", "cases": 120, "sources": ["centre A, 2019-2024"]},
    }
    path.write_text(json.dumps(block))
    use = read_intended_use(path)
    assert use.modality == "CT" and use.statement == "adult abdominal CT"
    assert use.training_data.cases == 120
    assert use.research_only  # the default stays on unless the file says otherwise


@pytest.mark.parametrize(
    "content",
    [
        None,
        "not json",
        json.dumps({"statement": "no modality"}),
        json.dumps({"modality": "CT", "x": 1}),
    ],
)
def test_a_missing_or_invalid_file_is_refused_naming_it(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "use.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelBundleError, match=r"--intended-use .*use\.json"):
        read_intended_use(path)
