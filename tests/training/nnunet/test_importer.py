"""``fedseg import nnunet`` on model folders that nnU-Net itself trained (conftest.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.cli.main import main
from service.inference.bundle import ModelBundle
from service.labels.registry import get_table
from training.nnunet.folder import CheckpointChoice
from training.nnunet.importer import ImportOptions, import_model

from .conftest import ReferenceModels


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plans_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "plans.json").read_text())["configurations"]["3d_fullres"]


def test_ct_bundle_carries_the_plans_recipe(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    out = import_model([nnunet_models.ct], tmp_path / "ct", ImportOptions())
    bundle = ModelBundle.load(out)
    manifest = bundle.manifest
    assert manifest.runtime.value == "nnunet-v2" and manifest.modality == "CT"
    assert manifest.nnunet is not None
    (model,) = manifest.nnunet.models
    plans = json.loads((nnunet_models.ct / "plans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    assert list(model.spacing) == pytest.approx(config["spacing"])
    assert list(model.patch_size) == config["patch_size"]
    assert list(model.transpose_forward) == plans["transpose_forward"]
    (norm,) = model.normalisation
    stats = plans["foreground_intensity_properties_per_channel"]["0"]
    assert norm.scheme.value == "CTNormalization"
    assert (norm.mean, norm.std, norm.percentile_00_5, norm.percentile_99_5) == pytest.approx(
        (stats["mean"], stats["std"], stats["percentile_00_5"], stats["percentile_99_5"])
    )
    assert model.mirror_axes == (0, 1, 2) and model.trainer == "nnUNetTrainer"
    assert model.resampling_data.order == 3 and model.resampling_logits.order == 1
    assert [f.fold for f in model.folds] == [0, 1]
    for fold in model.folds:
        source = nnunet_models.ct / fold.checkpoint
        assert fold.checkpoint_sha256 == _sha256(source)
        assert fold.onnx_sha256 == _sha256(out / fold.onnx)
    assert model.provenance.plans_sha256 == _sha256(nnunet_models.ct / "plans.json")
    assert model.provenance.nnunetv2 == "2.8.1" and not model.provenance.old_format_plans
    liver = manifest.label_table().by_name("liver")
    assert liver.type == get_table("ct-organs").by_name("liver").type  # SCT 10200004
    assert manifest.label_table().names == ["liver", "spleen", "lung_left", "lung_right"]
    assert dict(model.label_map) == {1: 1, 2: 2, 3: 3, 4: 4}
    assert manifest.intended_use.research_only and manifest.intended_use.modality == "CT"


def test_onnx_equals_nnunets_own_network(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    """Each fold's ONNX against the network nnU-Net's get_network_from_plans builds."""
    import onnxruntime
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    out = import_model([nnunet_models.ct], tmp_path / "ct", ImportOptions(folds=(1,)))
    manifest = ModelBundle.load(out).manifest
    assert manifest.nnunet is not None
    (fold,) = manifest.nnunet.models[0].folds
    arch = _plans_config(nnunet_models.ct)["architecture"]
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        1,
        5,
        deep_supervision=False,
    )
    state = torch.load(nnunet_models.ct / "fold_1" / "checkpoint_final.pth", weights_only=False)
    network.load_state_dict(state["network_weights"])
    network.eval()
    x = np.random.default_rng(3).normal(size=(3, 1, 16, 24, 24)).astype(np.float32)
    with torch.no_grad():
        expected = network(torch.from_numpy(x)).numpy()
    session = onnxruntime.InferenceSession(str(out / fold.onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    assert got.shape == (3, 5, 16, 24, 24)  # dynamic batch, fixed patch, no deep supervision
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_mr_model_zscore_and_modality_from_channel_names(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    manifest = ModelBundle.load(
        import_model([nnunet_models.mr], tmp_path / "mr", ImportOptions())
    ).manifest
    assert manifest.nnunet is not None
    assert manifest.modality == "MR" and manifest.nnunet.channels[0].name == "T1"
    (norm,) = manifest.nnunet.models[0].normalisation
    assert norm.scheme.value == "ZScoreNormalization" and norm.mean is None


def test_region_model_and_generic_codes_warn(
    nnunet_models: ReferenceModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="training.nnunet.labels"):
        out = import_model([nnunet_models.regions], tmp_path / "r", ImportOptions())
    manifest = ModelBundle.load(out).manifest
    assert manifest.nnunet is not None
    model = manifest.nnunet.models[0]
    assert model.regions_class_order == (1, 2, 3) and model.has_regions
    assert model.labels["lungs"] == (3, 4)
    table = manifest.label_table()
    assert table.names == ["organs", "lungs", "lung_left"]
    assert table.by_name("organs").type.code == "91723000"  # generic: no table names "organs"
    assert table.by_name("lung_left").tg263_name == "Lung_L"  # from fedseg's ct-organs table
    warned = [r.getMessage() for r in caplog.records]
    assert any("'organs'" in m and "--labels" in m for m in warned)
    assert any("'lungs'" in m for m in warned)
    assert not any("'lung_left'" in m for m in warned)


def test_label_table_option_names_and_codes(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    entry = {
        "number": 1,
        "name": "abdominal_organs",
        "display_name": "organs",
        "category": {"code": "123037004", "meaning": "Anatomical Structure"},
        "type": {"code": "113343008", "meaning": "Body organ"},
        "color": [10, 20, 30],
        "rt_roi_interpreted_type": "ORGAN",
    }
    table = tmp_path / "labels.json"
    table.write_text(json.dumps({"task": "centre", "labels": [entry]}))
    code = main(
        ["import", "nnunet", str(nnunet_models.regions), "--out", str(tmp_path / "b"),
         "--labels", str(table)]
    )  # fmt: skip
    assert code == 0
    names = ModelBundle.load(tmp_path / "b").manifest.label_table()
    organs = names.by_number(1)
    assert organs.name == "abdominal_organs" and organs.type.code == "113343008"


def test_totalsegmentator_layout_old_plans_no_mirroring(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    """The dataset folder above TRAINER__PLANS__CONFIGURATION, plans in the pre-2.4 format."""
    (trainer_folder,) = [p for p in nnunet_models.totalseg.iterdir() if p.is_dir()]
    assert trainer_folder.name == "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    assert "architecture" not in _plans_config(trainer_folder)
    assert "UNet_class_name" in _plans_config(trainer_folder)
    out = import_model([nnunet_models.totalseg], tmp_path / "ts", ImportOptions())
    manifest = ModelBundle.load(out).manifest
    assert manifest.nnunet is not None
    model = manifest.nnunet.models[0]
    assert model.provenance.old_format_plans
    assert model.trainer == "nnUNetTrainerNoMirroring" and model.mirror_axes == ()


def test_several_models_merge_label_maps(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    out = import_model(
        [nnunet_models.ct, nnunet_models.regions],
        tmp_path / "merged",
        ImportOptions(folds=(0,), name="phantom-merged", version="2.0.0"),
    )
    manifest = ModelBundle.load(out).manifest
    assert (manifest.name, manifest.version) == ("phantom-merged", "2.0.0")
    assert manifest.nnunet is not None
    first, second = manifest.nnunet.models
    names = manifest.label_table().names
    assert names == ["liver", "spleen", "lung_left", "lung_right", "organs", "lungs"]
    assert dict(first.label_map) == {1: 1, 2: 2, 3: 3, 4: 4}
    assert dict(second.label_map) == {1: 5, 2: 6, 3: 3}  # lung_left is one bundle label
    assert [f.onnx.split("/")[0] for f in (first.folds[0], second.folds[0])] == [
        "Dataset901_PhantomCt",
        "Dataset903_PhantomRegions",
    ]


def test_cli_folds_checkpoint_and_intended_use(
    nnunet_models: ReferenceModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intended = {
        "statement": "research only: phantom model",
        "modality": "CT",
        "body_regions": ["thorax", "abdomen"],
        "training_data": {"kind": "synthetic", "cases": 6, "sources": ["fedseg phantoms"]},
    }
    use = tmp_path / "use.json"
    use.write_text(json.dumps(intended))
    out = tmp_path / "b"
    code = main(
        ["import", "nnunet", str(nnunet_models.ct), "--out", str(out), "--folds", "1",
         "--checkpoint", "best", "--configuration", "3d_fullres", "--name", "ct-phantom",
         "--version", "0.3.0", "--intended-use", str(use)]
    )  # fmt: skip
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    manifest = ModelBundle.load(out).manifest
    assert manifest.nnunet is not None
    (fold,) = manifest.nnunet.models[0].folds
    assert (fold.fold, fold.checkpoint) == (1, "fold_1/checkpoint_best.pth")
    assert fold.checkpoint_sha256 == _sha256(nnunet_models.ct / "fold_1/checkpoint_best.pth")
    assert manifest.intended_use.statement == "research only: phantom model"
    assert manifest.intended_use.training_data.kind.value == "synthetic"
    assert (manifest.name, manifest.version) == ("ct-phantom", "0.3.0")


def test_import_is_reproducible_in_its_recipe(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    """Two imports of one folder give the same ONNX files and recipe (only `created` differs)."""
    options = ImportOptions(folds=(0,), checkpoint=CheckpointChoice.FINAL)
    a = json.loads(
        (import_model([nnunet_models.mr], tmp_path / "a", options) / "manifest.json").read_text()
    )
    b = json.loads(
        (import_model([nnunet_models.mr], tmp_path / "b", options) / "manifest.json").read_text()
    )
    assert a["nnunet"] == b["nnunet"]
    c = copy.deepcopy(a)
    c["provenance"]["created"] = b["provenance"]["created"]
    assert c == b
