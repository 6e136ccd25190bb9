"""A tiny nnU-Net model, its fedseg bundle and nnU-Net's own predictor for it.

The network is nnU-Net's PlainConvUNet built by ``get_network_from_plans`` from hand-written
plans (3 stages, 4→16 features, patch 16×32×32, transpose [0, 2, 1], CT normalisation), with
random but seeded weights for two folds; the bundle holds the same weights exported to ONNX.
The weights are saved as an nnU-Net trained-model folder (plans.json, dataset.json,
``fold_N/checkpoint_final.pth``) and imported with ``fedseg import nnunet``'s
:func:`training.nnunet.importer.import_model`, as a centre would. Built once per session (a few
seconds: two tiny exports), since every parity test needs it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset

from service.dicom.volume import Volume
from service.inference.bundle import ModelBundle, write_checksums
from service.inference.manifest import label_dicts
from service.labels.registry import get_table
from service.nifti import write_nifti
from service.qc.enum import BodyRegion
from tests.requirements import missing

PATCH = [16, 32, 32]
SPACING = [3.0, 1.5, 1.5]  # transposed (network) order
TRANSPOSE = [0, 2, 1]
LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney_left": 3}
CT_STATS = {
    "mean": 60.0,
    "std": 140.0,
    "percentile_00_5": -900.0,
    "percentile_99_5": 400.0,
    "median": 50.0,
    "min": -1000.0,
    "max": 2000.0,
}


def plans() -> dict[str, Any]:
    """nnU-Net v2 plans of one tiny 3d_fullres configuration."""
    arch = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": 3,
            "features_per_stage": [4, 8, 16],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [1, 1, 1],
            "n_conv_per_stage_decoder": [1, 1],
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    config = {
        "data_identifier": "nnUNetPlans_3d_fullres",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": PATCH,
        "median_image_size_in_voxels": [20, 60, 50],
        "spacing": SPACING,
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {
            "is_seg": False,
            "order": 3,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_seg_kwargs": {
            "is_seg": True,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {
            "is_seg": False,
            "order": 1,
            "order_z": 0,
            "force_separate_z": None,
        },
        "architecture": arch,
        "batch_dice": False,
    }
    return {
        "dataset_name": "Dataset901_Tiny",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": SPACING,
        "original_median_shape_after_transp": [20, 60, 50],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": TRANSPOSE,
        "transpose_backward": TRANSPOSE,
        "configurations": {"3d_fullres": config},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": CT_STATS},
    }


def dataset_json() -> dict[str, Any]:
    """dataset.json of the tiny model."""
    return {
        "channel_names": {"0": "CT"},
        "labels": LABELS,
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }


@dataclass
class TinyModel:
    """The tiny model in both worlds: nnU-Net (torch) and a fedseg bundle (ONNX)."""

    plans: dict[str, Any]
    dataset: dict[str, Any]
    states: list[dict[str, Any]]  # one state dict per fold
    network: Any  # torch module, weights of fold 0 loaded
    bundle: Path
    mirror_axes: tuple[int, ...] = (0, 1, 2)

    def predictor(self, use_mirroring: bool) -> Any:
        """nnU-Net's own predictor of these folds on the CPU."""
        import torch
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from training.nnunet.predictor import cpu_predictor

        torch.set_num_threads(1)
        manager = PlansManager(copy.deepcopy(self.plans))
        predictor = cpu_predictor(use_mirroring)
        predictor.manual_initialization(
            copy.deepcopy(self.network),
            manager,
            manager.get_configuration("3d_fullres"),
            self.states,
            self.dataset,
            "nnUNetTrainer",
            self.mirror_axes,
        )
        return predictor


def _network(plan: dict[str, Any], seed: int) -> Any:
    """The one-channel tiny network, its classes balanced on the CT phantom."""
    volume = ct_volume()
    window = np.clip(volume.array[:, :, :], -900, 400).transpose(2, 0, 1)[None, None]
    return balanced_network(plan, seed, (window - CT_STATS["mean"]) / CT_STATS["std"])


def balanced_network(plan: dict[str, Any], seed: int, window: np.ndarray) -> Any:
    """nnU-Net's PlainConvUNet of ``plan`` with seeded weights, its classes balanced on ``window``.

    ``window`` is normalised input ``[1, channels, z, y, x]``. A random network favours one class;
    subtracting each class's mean logit on the first patch of ``window`` from the output layer's
    bias gives every label voxels, so parity compares real boundaries.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = plan["configurations"]["3d_fullres"]["architecture"]
    torch.manual_seed(seed)
    network = get_network_from_plans(
        arch["network_class_name"],
        arch["arch_kwargs"],
        arch["_kw_requires_import"],
        window.shape[1],
        len(LABELS),
        allow_init=True,
        deep_supervision=False,
    )
    network.eval()
    with torch.no_grad():
        patch = torch.from_numpy(
            np.ascontiguousarray(window[..., : PATCH[0], : PATCH[1], : PATCH[2]])
        ).float()
        patch = torch.nn.functional.pad(patch, (0, 0, 0, 0, 0, PATCH[0] - patch.shape[2]))
        mean = network(patch).mean(dim=(0, 2, 3, 4))
        network.decoder.seg_layers[-1].bias -= mean
    return network


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: A fold entry for recipes whose ONNX file is never opened (export and preprocessing tests).
PLACEHOLDER_FOLD = {
    "fold": 0,
    "onnx": "m/fold_0.onnx",
    "onnx_sha256": "0" * 64,
    "checkpoint": "checkpoint_final.pth",
    "checkpoint_sha256": "0" * 64,
}


def recipe_block(folds: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """The manifest's nnunet block for the tiny model."""
    model: dict[str, Any] = {
        "name": "Dataset901_Tiny",
        "configuration": "3d_fullres",
        "trainer": "nnUNetTrainer",
        "plans_name": "nnUNetPlans",
        "transpose_forward": TRANSPOSE,
        "transpose_backward": TRANSPOSE,
        "spacing": SPACING,
        "crop_to_nonzero": True,
        "normalisation": [
            {
                "scheme": "CTNormalization",
                "use_mask_for_norm": False,
                **{k: CT_STATS[k] for k in ("mean", "std", "percentile_00_5", "percentile_99_5")},
            }
        ],
        "resampling_data": {"order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_logits": {"order": 1, "order_z": 0, "force_separate_z": None},
        "patch_size": PATCH,
        "tile_step_size": 0.5,
        "gaussian": True,
        "gaussian_sigma_scale": 0.125,
        "gaussian_value_scaling_factor": 10,
        "mirror_axes": [0, 1, 2],
        "labels": LABELS,
        "regions_class_order": None,
        "ignore_label": None,
        "label_map": {"1": 1, "2": 2, "3": 3},
        "postprocessing": [
            {
                "function": "remove_all_but_largest_component_from_segmentation",
                "kwargs": {"labels_or_regions": [1]},
            }
        ],
        "folds": folds,
        "provenance": {
            "nnunetv2": "2.8.1",
            "plans_sha256": "0" * 64,
            "dataset_json_sha256": "0" * 64,
            "old_format_plans": False,
        },
    }
    model.update(overrides)
    return {"recipe_version": 1, "channels": [{"name": "CT", "modality": "CT"}], "models": [model]}


def manifest_data(block: dict[str, Any]) -> dict[str, Any]:
    """A whole manifest around an nnunet block (labels: ct-organs' liver, spleen, kidney)."""
    table = get_table("ct-organs")
    wanted = {"liver": 1, "spleen": 2, "kidney_left": 3}
    labels = []
    for entry in label_dicts(table):
        if entry["name"] in wanted:
            labels.append(
                {
                    **entry,
                    "number": wanted[entry["name"]],
                }
            )
            labels[-1].pop("qc", None)
    labels.sort(key=lambda e: e["number"])
    return {
        "name": "tiny-nnunet",
        "version": "0.0.1",
        "task": "ct-organs",
        "modality": "CT",
        "labels": labels,
        "runtime": "nnunet-v2",
        "nnunet": block,
        "provenance": {"created": "2026-12-03"},
        "onnx_opset": 17,
        "intended_use": {
            "modality": "CT",
            "body_regions": [region.value for region in BodyRegion],
            "training_data": {"kind": "synthetic", "cases": 0, "sources": ["a test fixture"]},
            "checks": ["modality"],
        },
    }


def write_bundle(folder: Path, onnx_files: dict[str, bytes], block: dict[str, Any]) -> Path:
    """Write manifest, ONNX files and checksums; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in onnx_files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest_data(block), indent=2))
    write_checksums(folder)
    return folder


def _model_folder(
    root: Path,
    networks: list[Any],
    plan: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
) -> Path:
    """The networks as nnU-Net writes a trained model: one folder, a checkpoint per fold
    (the tiny model's plans and dataset.json unless others are given)."""
    import torch

    plan = plan or plans()
    dataset = dataset or dataset_json()
    folder = root / "Dataset901_Tiny" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plan, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for fold, network in enumerate(networks):
        (folder / f"fold_{fold}").mkdir()
        checkpoint = {
            "network_weights": network.state_dict(),
            "optimizer_state": None,
            "grad_scaler_state": None,
            "logging": {},
            "_best_ema": None,
            "current_epoch": 1,
            "init_args": {
                "plans": plan,
                "configuration": "3d_fullres",
                "fold": fold,
                "dataset_json": dataset,
            },
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(checkpoint, folder / f"fold_{fold}" / "checkpoint_final.pth")
    (folder / "postprocessing.json").write_text(
        json.dumps(
            {
                "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"],
                "postprocessing_kwargs": [{"labels_or_regions": [1]}],
            }
        )
    )
    return folder


def _import_bundle(
    root: Path,
    networks: list[Any],
    plan: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
) -> Path:
    from training.nnunet.importer import ImportOptions, import_model

    folder = _model_folder(root, networks, plan, dataset)
    return import_model([folder], root / "bundle", ImportOptions(name="tiny-nnunet"))


def require_nnunet() -> None:
    """Skip (locally) or fail (CI) when nnU-Net and torch are not installed."""
    try:
        import nnunetv2  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        missing("nnunetv2 and torch (fedseg[train]) are needed for the nnU-Net parity tests")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny two-fold model, its bundle, and nnU-Net's predictor factory."""
    require_nnunet()
    plan = plans()
    networks = [_network(plan, seed) for seed in (11, 12)]
    states = [copy.deepcopy(n.state_dict()) for n in networks]
    bundle = _import_bundle(tmp_path_factory.mktemp("tiny-nnunet"), networks)
    manifest = ModelBundle.load(bundle).manifest
    assert manifest.nnunet is not None
    assert manifest.nnunet.models[0].postprocessing, "the importer dropped postprocessing.json"
    return TinyModel(
        plans=plan, dataset=dataset_json(), states=states, network=networks[0], bundle=bundle
    )


def ct_volume(seed: int = 0) -> Volume:
    """A small synthetic CT: a body of soft tissue with organs, air around, a zero border."""
    rng = np.random.default_rng(seed)
    # i, j, k; spacing 1.2, 1.2, 4.0 mm: anisotropic (separate z); on the network grid
    # (19, 42, 30): two tiles along two axes, and padding to the patch along the third.
    shape = (56, 40, 14)
    i, j, k = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    array = np.full(shape, -1000.0, dtype=np.float32)
    body = ((i - 28) / 24) ** 2 + ((j - 20) / 16) ** 2 <= 1
    array[body] = 30.0
    organ = ((i - 20) / 9) ** 2 + ((j - 18) / 8) ** 2 + ((k - 7) / 4) ** 2 <= 1
    array[organ] = 120.0
    bone = ((i - 34) / 4) ** 2 + ((j - 26) / 4) ** 2 <= 1
    array[bone] = 700.0
    array += rng.normal(0, 15, shape).astype(np.float32)
    array[:3] = 0.0  # outside the reconstruction circle: cropped away by nnU-Net
    array[:, -2:] = 0.0
    affine = np.diag([1.2, 1.2, 4.0, 1.0])
    affine[:3, 3] = (-40.0, -30.0, 100.0)
    return Volume(
        array=array,
        affine=affine,
        modality="CT",
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="1.2.4",
        series_description="test",
        stack_label="",
        slices=(),
        headers=(Dataset(),),
    )


def reference_labels(
    model: TinyModel, volume: Volume, folder: Path, use_mirroring: bool
) -> np.ndarray:
    """nnU-Net's labels for ``volume`` (read from NIfTI by SimpleITKIO), postprocessed, in
    fedseg's array order."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation,
    )

    path = write_nifti(folder / "case_0000.nii.gz", volume.array, volume.affine)
    data, properties = SimpleITKIO().read_images([str(path)])
    predictor = model.predictor(use_mirroring)
    labels = predictor.predict_single_npy_array(data, properties, None, None, False)
    labels = remove_all_but_largest_component_from_segmentation(labels, [1])
    return np.asarray(labels).transpose(2, 1, 0)
