"""Bad intended-use blocks and priors are refused when a bundle is loaded, with the field named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import ConfigurationError, ModelBundleError
from service.inference.bundle import MANIFEST_FILE, ModelBundle, save_bundle, write_checksums
from service.labels.registry import LabelTable, load_table
from tests.service.inference.conftest import pointwise_model, threshold_manifest

Edit = Callable[[dict[str, Any]], None]


def _bundle_with(tmp_path: Path, edit: Edit) -> Path:
    """A valid ct-organs bundle whose manifest is then edited (checksums kept consistent)."""
    manifest = threshold_manifest("ct-organs", modality="CT")
    model = pointwise_model(np.ones((9, 1)), np.zeros(9))
    folder = save_bundle(tmp_path / "bundle", model, manifest).path
    data = json.loads((folder / MANIFEST_FILE).read_text())
    edit(data)
    (folder / MANIFEST_FILE).write_text(json.dumps(data))
    write_checksums(folder)
    return folder


def _set(path: str, value: object) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (_set("intended_use.body_regions", ["belly"]), r"intended_use\.body_regions\.0"),
        (_set("intended_use.checks", ["weight"]), r"intended_use\.checks\.0"),
        (
            _set("intended_use.age_years", {"min": 80, "max": 18}),
            r"intended_use\.age_years[\s\S]*min \(80\) exceeds max \(18\)",
        ),
        (_set("intended_use.modality", "MR"), "intended_use.modality 'MR' differs"),
        (
            _set("intended_use.channels", {"1": {"modality": "PT"}}),
            r"intended_use\.channels\.1: the model takes 1 input channel\(s\), numbered 0 to 0",
        ),
        (
            _set("intended_use.channels", {"0": {"modality": "CT"}}),
            r"intended_use\.channels[\s\S]*channel 0 is the block itself",
        ),
        (
            _set("intended_use.channels", {"1": {"checks": ["modality", "age"]}}),
            r"intended_use\.channels\.1[\s\S]*\['age'\] cannot run on a further channel",
        ),
        (_set("intended_use", "research only"), "intended_use must be a block"),
        (
            _set("labels.0.qc.volume_ml.1.expected", {"min": 2600, "max": 800}),
            r"label 'liver': qc\.volume_ml\.1\.expected: min \(2600\) exceeds max \(800\)",
        ),
        (
            _set("labels.0.qc.checks", ["inside_body", "shape"]),
            r"label 'liver': qc\.checks\.1",
        ),
        (
            _set("labels.0.qc.relations", [{"relation": "below", "of": "heart"}]),
            r"label 'liver': qc\.relations: 'heart' is not a label of ct-organs",
        ),
        (
            _set("labels.0.qc.intensity", {"US": {"expected": {"min": 0}}}),
            r"label 'liver': qc\.intensity: .*unknown modality US",
        ),
    ],
)
def test_bad_blocks_are_refused_at_load_with_the_field_named(
    tmp_path: Path, edit: Edit, named: str
) -> None:
    folder = _bundle_with(tmp_path, edit)
    with pytest.raises(ModelBundleError, match=named):
        ModelBundle.load(folder)


def test_the_shipped_bundles_and_tables_load_with_cited_priors() -> None:
    root = Path(__file__).resolve().parents[3]
    for task in ("ct-organs", "mr-tumour", "pet-lesion"):
        bundle = ModelBundle.load(root / "models" / task)
        intended = bundle.manifest.intended_use
        assert intended.research_only and intended.training_data.sources
        table: LabelTable = bundle.manifest.label_table()
        assert all(e.qc is not None and e.qc.references for e in table.labels), task


def test_a_table_with_an_inverted_prior_is_refused(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3] / "service" / "labels" / "tables"
    data = json.loads((root / "ct-organs.json").read_text())
    data["labels"][1]["qc"]["intensity"]["CT"]["possible"] = {"min": 300, "max": -20}
    path = tmp_path / "ct-organs.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigurationError, match=r"label 'spleen': qc\.intensity\.CT\.possible"):
        load_table(path)
