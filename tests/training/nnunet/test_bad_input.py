"""``fedseg import nnunet`` refuses what it cannot carry over, naming the file and the field.

Each case edits a copy of a model folder that nnU-Net trained (conftest.py) in one way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.errors import ModelBundleError
from training.nnunet.importer import ImportOptions, import_model
from training.nnunet.network import check_parity, export_onnx

from .conftest import ReferenceModels

TRAINER = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def _copy(source: Path, root: Path, name: str = TRAINER) -> Path:
    target = root / "Dataset901_PhantomCt" / name
    shutil.copytree(source, target)
    return target


def _edit_plans(folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    plans = json.loads((folder / "plans.json").read_text())
    edit(plans)
    (folder / "plans.json").write_text(json.dumps(plans))
    return folder / "plans.json"


def test_not_an_nnunet_folder(tmp_path: Path) -> None:
    (tmp_path / "some" / "fold_0").mkdir(parents=True)
    with pytest.raises(
        ModelBundleError, match=r"some: not an nnU-Net model folder: no plans\.json"
    ):
        import_model([tmp_path / "some"], tmp_path / "out", ImportOptions())
    assert not (tmp_path / "out").exists()


def test_missing_dataset_json(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    folder = _copy(nnunet_models.ct, tmp_path)
    (folder / "dataset.json").unlink()
    with pytest.raises(ModelBundleError, match=rf"{TRAINER}/dataset\.json: missing"):
        import_model([folder], tmp_path / "out", ImportOptions())


def test_missing_fold(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    with pytest.raises(
        ModelBundleError,
        match=r"fold_3/checkpoint_final\.pth: missing; fold 3 was requested but the folder "
        r"has checkpoint_final\.pth for fold\(s\) 0, 1",
    ):
        import_model([nnunet_models.ct], tmp_path / "out", ImportOptions(folds=(0, 3)))


def test_checkpoint_that_does_not_match_its_plans(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    folder = _copy(nnunet_models.ct, tmp_path)

    def wider(plans: dict[str, Any]) -> None:
        arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [f * 2 for f in arch["features_per_stage"]]

    _edit_plans(folder, wider)
    with pytest.raises(
        ModelBundleError,
        match=r"fold_0/checkpoint_final\.pth: network_weights do not match the network that "
        r".*plans\.json \(configurations\.3d_fullres\)",
    ):
        import_model([folder], tmp_path / "out", ImportOptions(folds=(0,)))
    assert not any((tmp_path).glob(".out.*")), "a failed import leaves its staging folder"


def test_unknown_normalisation_scheme(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    folder = _copy(nnunet_models.ct, tmp_path)

    def scheme(plans: dict[str, Any]) -> None:
        plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["MyHistogramNorm"]

    _edit_plans(folder, scheme)
    with pytest.raises(
        ModelBundleError,
        match=r"plans\.json: configurations\.3d_fullres\.normalization_schemes\[0\]: unknown "
        r"normalisation scheme 'MyHistogramNorm'",
    ):
        import_model([folder], tmp_path / "out", ImportOptions(folds=(0,)))


def test_unknown_network_class(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    folder = _copy(nnunet_models.ct, tmp_path)

    def network(plans: dict[str, Any]) -> None:
        arch = plans["configurations"]["3d_fullres"]["architecture"]
        arch["network_class_name"] = "my_lab.networks.SwinSomething"

    _edit_plans(folder, network)
    with pytest.raises(
        ModelBundleError,
        match=r"plans\.json: configurations\.3d_fullres\.architecture\.network_class_name: "
        r"unknown network class 'my_lab\.networks\.SwinSomething'",
    ):
        import_model([folder], tmp_path / "out", ImportOptions(folds=(0,)))


def test_unknown_network_class_in_old_plans(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    (source,) = [p for p in nnunet_models.totalseg.iterdir() if p.is_dir()]
    folder = _copy(source, tmp_path, source.name)

    def network(plans: dict[str, Any]) -> None:
        plans["configurations"]["3d_fullres"]["UNet_class_name"] = "STUNet"

    _edit_plans(folder, network)
    with pytest.raises(
        ModelBundleError,
        match=r"configurations\.3d_fullres\.UNet_class_name: unknown network class 'STUNet'",
    ):
        import_model([folder], tmp_path / "out", ImportOptions())


def test_cascade_configuration_is_refused(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    folder = _copy(nnunet_models.ct, tmp_path, "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres")

    def cascade(plans: dict[str, Any]) -> None:
        plans["configurations"]["3d_cascade_fullres"] = {
            "inherits_from": "3d_fullres",
            "previous_stage": "3d_lowres",
        }

    _edit_plans(folder, cascade)
    with pytest.raises(
        ModelBundleError,
        match=r"plans\.json: configuration '3d_cascade_fullres' is a cascade stage; it needs the "
        r"low-resolution stage's segmentation",
    ):
        import_model([folder], tmp_path / "out", ImportOptions())


def test_configuration_the_folder_does_not_hold(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    with pytest.raises(
        ModelBundleError, match=r"holds configuration '3d_fullres', not the requested '2d'"
    ):
        import_model([nnunet_models.ct], tmp_path / "out", ImportOptions(configuration="2d"))


def test_models_with_different_inputs_are_not_merged(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    with pytest.raises(ModelBundleError, match=r"dataset\.json: channel_names differ"):
        import_model([nnunet_models.ct, nnunet_models.mr], tmp_path / "out", ImportOptions())
    assert not (tmp_path / "out").exists()


def test_existing_bundle_is_not_overwritten(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ModelBundleError, match=r"out: exists and is not empty"):
        import_model([nnunet_models.mr], tmp_path / "out", ImportOptions())


def test_export_that_differs_from_torch_is_refused(tmp_path: Path) -> None:
    """The parity check compares the ONNX graph with the torch network it claims to be."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    def network(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return PlainConvUNet(
            1, 2, (4, 8), torch.nn.Conv3d, 3, ((1, 1, 1), (2, 2, 2)), (1, 1), 3, (1,),
            conv_bias=True, norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"affine": True},
            nonlin=torch.nn.LeakyReLU,
        ).eval()  # fmt: skip

    first, second = network(1), network(2)
    data = export_onnx(first, 1, (8, 8, 8))
    assert check_parity(first, data, 1, (8, 8, 8), tmp_path).difference < 1e-4
    with pytest.raises(ModelBundleError, match=r"the ONNX export differs from torch by up to"):
        check_parity(second, data, 1, (8, 8, 8), tmp_path)


def test_fold_all_is_refused_clearly(nnunet_models: ReferenceModels, tmp_path: Path) -> None:
    folder = _copy(nnunet_models.ct, tmp_path)
    shutil.rmtree(folder / "fold_1")
    (folder / "fold_0").rename(folder / "fold_all")
    with pytest.raises(
        ModelBundleError, match=r"fold_all/checkpoint_final\.pth: a model trained on all cases"
    ):
        import_model([folder], tmp_path / "out", ImportOptions())
