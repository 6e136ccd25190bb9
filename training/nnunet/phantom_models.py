"""Small nnU-Net v2 models trained by nnU-Net itself on fedseg's phantoms.

These are real nnU-Net model folders (``plans.json``, ``dataset.json``, ``fold_N/checkpoint_*.pth``)
made by nnU-Net's own fingerprint extractor, planner, preprocessor and trainer. Only the plans are
shrunk (a few feature maps, three stages, a small patch) and training is cut to a few dozen
iterations, so that the test suite and ``make models`` can build them on a CPU in seconds. They
are what the importer and the service's nnU-Net runtime are tested against; they segment the
phantoms, not patients.

nnU-Net reads its folders from the environment (``nnUNet_raw``, ``nnUNet_preprocessed``,
``nnUNet_results``), so the builder runs as its own process: ``python -m
training.nnunet.phantom_models --root DIR --model ct`` sets them to folders under ``DIR`` and
nothing else sees them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.nifti import write_nifti
from training.nnunet.environment import N_PROC_DA, nnunet_folders
from training.nnunet.federated_plans import small_network
from training.phantoms import PhantomConfig, PhantomModality, Size, make_case
from training.phantoms.anatomy import organ_labels
from training.phantoms.config import ORGAN_VALUES

logger = logging.getLogger(__name__)

CONFIGURATION = "3d_fullres"
#: The phantom organs the models learn, as nnU-Net label values 1..4.
ORGANS: tuple[str, ...] = ("liver", "spleen", "lung_left", "lung_right")


@dataclass(frozen=True)
class PhantomModelSpec:
    """One model to build.

    ``regions`` turns the model into a region model (sigmoid outputs, ``regions_class_order``):
    "organs" = every organ, "lungs" = both lungs, "lung_left"; their overlap order gives
    1 = liver or spleen, 2 = right lung, 3 = left lung. ``old_format`` rewrites ``plans.json``
    after training in the format nnU-Net v2 used before 2.4 (TotalSegmentator's weights) and lays
    the model out as TotalSegmentator's folders are.
    """

    key: str
    dataset_id: int
    modality: PhantomModality
    trainer: str = "nnUNetTrainer"
    folds: tuple[int, ...] = (0,)
    regions: bool = False
    old_format: bool = False
    train_cases: int = 6
    test_cases: int = 2
    epochs: int = 15
    iterations_per_epoch: int = 10
    initial_lr: float = 0.1
    patch_size: tuple[int, int, int] = (16, 24, 24)
    features: tuple[int, ...] = (8, 16, 32)
    seed: int = 2026
    extra_plans: dict[str, object] = field(default_factory=dict)

    @property
    def dataset_name(self) -> str:
        """nnU-Net's ``DatasetNNN_Name``."""
        return f"Dataset{self.dataset_id:03d}_Phantom{self.key.replace('_', '').title()}"


SPECS: dict[str, PhantomModelSpec] = {
    spec.key: spec
    for spec in (
        PhantomModelSpec("ct", 901, PhantomModality.CT, folds=(0, 1)),
        PhantomModelSpec("mr", 902, PhantomModality.MR),
        PhantomModelSpec("regions", 903, PhantomModality.CT, regions=True),
        PhantomModelSpec(
            "totalseg", 904, PhantomModality.CT, trainer="nnUNetTrainerNoMirroring", old_format=True
        ),
        # shipped in models/nnunet-phantom by ``make models``: more cases and iterations
        PhantomModelSpec("demo", 905, PhantomModality.CT, train_cases=12, epochs=40),
    )
}


def case_arrays(spec: PhantomModelSpec, case: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, nnU-Net label map (values 1..4 = :data:`ORGANS`) and affine of one phantom case."""
    config = PhantomConfig(
        sites=1,
        cases_per_site=spec.train_cases + spec.test_cases,
        seed=spec.seed,
        size=Size.TINY,
        modalities=(spec.modality,),
        partial_labels=False,
        absent_organ_rate=0.0,
    )
    phantom = make_case(config, 1, case)
    if spec.modality is PhantomModality.CT:
        assert phantom.ct is not None
        image, organs, affine = phantom.ct.hu, phantom.ct.organs, phantom.ct.grid.affine
    else:
        assert phantom.mr is not None
        grid = phantom.mr.grid
        image, affine = phantom.mr.signal, grid.affine
        organs = organ_labels(phantom.anatomy.tissue_map(grid))
    labels = np.zeros(organs.shape, dtype=np.uint8)
    for value, name in enumerate(ORGANS, start=1):
        labels[organs == ORGAN_VALUES[name]] = value
    return image.astype(np.float32), labels, np.asarray(affine)


def _dataset_json(spec: PhantomModelSpec) -> dict[str, object]:
    channel = "CT" if spec.modality is PhantomModality.CT else "T1"
    labels: dict[str, object]
    if spec.regions:
        # liver 1, spleen 2, lung_left 3, lung_right 4 in the label files
        labels = {"background": 0, "organs": [1, 2, 3, 4], "lungs": [3, 4], "lung_left": 3}
    else:
        labels = {"background": 0, **{name: value for value, name in enumerate(ORGANS, 1)}}
    data: dict[str, object] = {
        "channel_names": {"0": channel},
        "labels": labels,
        "numTraining": spec.train_cases,
        "file_ending": ".nii.gz",
        "name": spec.dataset_name,
        "description": "fedseg phantoms (synthetic), built for tests",
    }
    if spec.regions:
        data["regions_class_order"] = [1, 2, 3]
    return data


def write_raw_dataset(spec: PhantomModelSpec, raw: Path) -> Path:
    """Write ``imagesTr``/``labelsTr``/``dataset.json`` and held-out ``imagesTs``/``labelsTs``."""
    folder = raw / spec.dataset_name
    for case in range(1, spec.train_cases + spec.test_cases + 1):
        image, labels, affine = case_arrays(spec, case)
        train = case <= spec.train_cases
        name = f"phantom_{case:03d}"
        write_nifti(
            folder / ("imagesTr" if train else "imagesTs") / f"{name}_0000.nii.gz", image, affine
        )
        write_nifti(
            folder / ("labelsTr" if train else "labelsTs") / f"{name}.nii.gz", labels, affine
        )
    (folder / "dataset.json").write_text(json.dumps(_dataset_json(spec), indent=2))
    return folder


def shrink_plans(plans: dict, spec: PhantomModelSpec) -> dict:
    """The planner's plans with a tiny 3d_fullres network: few features, few stages, small patch."""
    plans = small_network(plans, spec.features, spec.patch_size)
    plans["configurations"][CONFIGURATION].update(spec.extra_plans)
    return plans


def to_old_format(plans: dict) -> dict:
    """``plans`` in nnU-Net v2's format before 2.4 (no ``architecture``; TotalSegmentator's)."""
    old = json.loads(json.dumps(plans))
    for config in old["configurations"].values():
        arch = config.pop("architecture")
        kwargs = arch["arch_kwargs"]
        features = kwargs["features_per_stage"]
        config["UNet_class_name"] = arch["network_class_name"].rsplit(".", 1)[-1]
        config["UNet_base_num_features"] = features[0]
        config["unet_max_num_features"] = features[-1]
        config["n_conv_per_stage_encoder"] = kwargs["n_conv_per_stage"]
        config["n_conv_per_stage_decoder"] = kwargs["n_conv_per_stage_decoder"]
        config["pool_op_kernel_sizes"] = kwargs["strides"]
        config["conv_kernel_sizes"] = kwargs["kernel_sizes"]
        config["num_pool_per_axis"] = [
            sum(1 for s in kwargs["strides"] if s[axis] > 1) for axis in range(3)
        ]
    return old


def _splits(spec: PhantomModelSpec) -> list[dict[str, list[str]]]:
    cases = [f"phantom_{c:03d}" for c in range(1, spec.train_cases + 1)]
    half = len(cases) // 2
    return [
        {"train": cases[:half] + cases[half + 1 :], "val": [cases[half]]},
        {"train": cases[1:], "val": cases[:1]},
    ]


def build(spec: PhantomModelSpec, root: Path) -> Path:
    """Build one model under ``root``; returns its trained model folder.

    Runs inside :func:`~training.nnunet.environment.nnunet_folders` of ``root`` (:func:`main`
    does it), since nnU-Net reads its folders from the environment.
    """
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    torch.manual_seed(spec.seed)
    np.random.seed(spec.seed)  # nnU-Net's augmentation draws from numpy's global generator
    raw = write_raw_dataset(spec, root / "raw")
    extract_fingerprint_dataset(spec.dataset_id, num_processes=1, show_progress_bar=False)
    _, plans_name = plan_experiment_dataset(spec.dataset_id)
    preprocessed = root / "preprocessed" / spec.dataset_name
    plans_file = preprocessed / f"{plans_name}.json"
    plans = shrink_plans(json.loads(plans_file.read_text()), spec)
    plans_file.write_text(json.dumps(plans, indent=2))
    (preprocessed / "splits_final.json").write_text(json.dumps(_splits(spec)))
    preprocess_dataset(spec.dataset_id, plans_name, [CONFIGURATION], [1], show_progress_bar=False)
    dataset_json = json.loads((raw / "dataset.json").read_text())
    output = _train(spec, root, plans, dataset_json)
    assert output is not None
    if spec.old_format:
        (output / "plans.json").write_text(json.dumps(to_old_format(plans), indent=2))
    return output


def _train(spec: PhantomModelSpec, root: Path, plans: dict, dataset_json: dict) -> Path:
    import torch

    from training.nnunet.network import find_trainer_class

    trainer_class = find_trainer_class(spec.trainer)
    assert trainer_class is not None, spec.trainer
    # Augmentation in this process while training (0); nnU-Net's planner needs a positive value.
    with nnunet_folders(root, {N_PROC_DA: "0"}):
        output = None
        for fold in spec.folds:
            trainer = trainer_class(
                {**plans, "continue_training": False},
                CONFIGURATION,
                fold,
                dataset_json,
                torch.device("cpu"),
            )
            trainer.num_epochs = spec.epochs
            trainer.num_iterations_per_epoch = spec.iterations_per_epoch
            trainer.num_val_iterations_per_epoch = 1
            trainer.initial_lr = spec.initial_lr
            trainer.run_training()
            output = Path(trainer.output_folder_base)
    assert output is not None
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Build the models named on the command line under ``--root``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="folder for nnU-Net's folders")
    parser.add_argument(
        "--model", action="append", choices=sorted(SPECS), required=True, help="model to build"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: one core per build)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    root: Path = args.root.resolve()
    with nnunet_folders(root):
        for key in args.model:
            folder = build(SPECS[key], root)
            shutil.rmtree(root / "preprocessed" / SPECS[key].dataset_name, ignore_errors=True)
            print(f"{key}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
