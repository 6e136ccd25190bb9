"""Imported bundles run by fedseg's nnU-Net executor against ``nnUNetPredictor`` itself.

The models were trained by nnU-Net on phantoms (conftest.py); the cases compared are the held-out
``imagesTs`` ones, never seen in training. Both sides read the same NIfTI files: fedseg through
``service.nifti`` (its array order), nnU-Net through its SimpleITKIO, as NNUNET_RECIPE.md fixes.
``fedseg segment`` on a phantom CT series written as DICOM must give SEG, RTSTRUCT and SR that
dciodvfy accepts.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import Dataset

from service.config import get_settings
from service.dicom.volume import Volume
from service.inference.bundle import ModelBundle
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, Mirroring, SessionOptions
from service.nifti import read_nifti
from service.segment import SegmentOptions, segment_study
from tests.dciodvfy import assert_valid
from training.nnunet.importer import ImportOptions, import_model

from .conftest import ReferenceModels


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _predictor(folder: Path, use_mirroring: bool) -> Any:
    """nnUNetPredictor initialised as ``initialize_from_trained_model_folder`` does.

    The network is built by nnU-Net's ``get_network_from_plans`` instead of looking the trainer
    up by name: nnU-Net's search imports every trainer module, and Primus's needs torchvision.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from training.nnunet.predictor import cpu_predictor

    torch.set_num_threads(1)
    dataset = json.loads((folder / "dataset.json").read_text())
    manager = PlansManager(json.loads((folder / "plans.json").read_text()))
    config = manager.get_configuration("3d_fullres")
    checkpoints = [
        torch.load(p, map_location="cpu", weights_only=False)
        for p in sorted(folder.glob("fold_*/checkpoint_final.pth"))
    ]
    network = get_network_from_plans(
        config.network_arch_class_name,
        config.network_arch_init_kwargs,
        config.network_arch_init_kwargs_req_import,
        determine_num_input_channels(manager, config, dataset),
        manager.get_label_manager(dataset).num_segmentation_heads,
        deep_supervision=False,
    )
    predictor = cpu_predictor(use_mirroring)
    predictor.manual_initialization(
        network,
        manager,
        config,
        [c["network_weights"] for c in checkpoints],
        dataset,
        checkpoints[0]["trainer_name"],
        checkpoints[0]["inference_allowed_mirroring_axes"],
    )
    return predictor


def _volume(path: Path, modality: str) -> Volume:
    array, affine = read_nifti(path)
    return Volume(
        array=np.asarray(array, dtype=np.float32),
        affine=affine,
        modality=modality,
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="1.2.4",
        series_description="held-out phantom",
        stack_label="",
        slices=(),
        headers=(Dataset(),),
    )


def _reference(predictor: Any, image: Path) -> np.ndarray:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    data, properties = SimpleITKIO().read_images([str(image)])
    labels = predictor.predict_single_npy_array(data, properties, None, None, False)
    return np.asarray(labels).transpose(2, 1, 0)  # SimpleITK (z, y, x) -> fedseg (i, j, k)


CASES = [
    ("ct", "CT", False),
    ("ct", "CT", True),
    ("mr", "MR", True),
    ("regions", "CT", False),
    ("regions", "CT", True),
    ("totalseg", "CT", True),
]


@pytest.mark.parametrize(
    ("key", "modality", "mirror"),
    CASES,
    ids=[f"{k}-{'tta' if m else 'plain'}" for k, _, m in CASES],
)
def test_labels_match_nnunet_predictor(
    nnunet_models: ReferenceModels, tmp_path: Path, key: str, modality: str, mirror: bool
) -> None:
    source = getattr(nnunet_models, key)
    bundle = ModelBundle.load(import_model([source], tmp_path / "bundle", ImportOptions()))
    trained = source if (source / "plans.json").is_file() else next(source.iterdir())
    predictor = _predictor(trained, mirror)
    segmenter = open_segmenter(
        bundle,
        SessionOptions(device=Device.CPU),
        mirroring=Mirroring.ON if mirror else Mirroring.OFF,
    )
    assert bundle.manifest.nnunet is not None
    label_map = dict(bundle.manifest.nnunet.models[0].label_map)
    images = sorted((nnunet_models.raw(key) / "imagesTs").glob("*_0000.nii.gz"))
    assert images, "no held-out cases"
    found: set[int] = set()
    for image in images:
        expected_nnunet = _reference(predictor, image)
        expected = np.zeros_like(expected_nnunet)
        for value, number in label_map.items():
            expected[expected_nnunet == value] = number
        labels = segmenter.segment(_volume(image, modality)).labels
        assert labels.shape == expected.shape
        equal = float((labels == expected).mean())
        assert equal >= 0.999, f"{image.name}: {equal:.5f} of voxels equal"
        for value in sorted(set(np.unique(expected).tolist()) - {0}):
            dice = _dice(labels == value, expected == value)
            assert dice >= 0.995, f"{image.name}: label {value}: Dice {dice:.4f}"
        found |= set(np.unique(expected).tolist()) - {0}
    assert len(found) >= 2, f"nnU-Net's labels are too few to compare: {sorted(found)}"


def test_segment_writes_valid_seg_rtstruct_sr(
    nnunet_models: ReferenceModels, tmp_path: Path
) -> None:
    """A held-out phantom CT as DICOM through ``segment_study`` with the imported bundle."""
    from training.nnunet.phantom_models import SPECS
    from training.phantoms import PhantomConfig, PhantomModality, Size, generate_dataset

    spec = SPECS["ct"]
    config = PhantomConfig(
        sites=1,
        cases_per_site=spec.train_cases + 1,
        seed=spec.seed,
        size=Size.TINY,
        modalities=(PhantomModality.CT,),
        partial_labels=False,
        absent_organ_rate=0.0,
    )
    generate_dataset(tmp_path / "dicom", config)
    series = tmp_path / "dicom" / "site-01" / f"case-{spec.train_cases + 1:03d}" / "ct"
    bundle = import_model([nnunet_models.ct], tmp_path / "bundle", ImportOptions())
    out = tmp_path / "out"
    settings = copy.copy(get_settings())
    result = segment_study([series], out, SegmentOptions(models=(str(bundle),)), settings)
    assert result is not None
    report = json.loads((out / "measurements.json").read_text())
    names = {s["name"] for s in report["segments"]}
    assert names & {"liver", "lung_left", "lung_right"}, names
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
