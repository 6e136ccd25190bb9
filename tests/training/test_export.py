"""Export to bundles: ONNX parity with torch on random and real input, manifest contents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from service.dicom.volume import read_volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.pipeline import Segmenter
from service.inference.preprocess import prepare
from training.export import ExportInfo, export_bundle
from training.models import ModelConfig, MultiTaskUNet
from training.tasks import get_task

DataDir = Callable[[str], Path]


def _model(heads: dict[str, int]) -> MultiTaskUNet:
    torch.manual_seed(3)
    return MultiTaskUNet(ModelConfig(heads=heads, filters=(4, 8, 16))).eval()


@pytest.fixture(scope="module")
def pet_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[MultiTaskUNet, ModelBundle]:
    model = _model({"pet-lesion": 2, "ct-organs": 9})
    info = ExportInfo(version="0.0.1", training_sites=["site-01"], validation_metrics={"dice": 0.5})
    out = tmp_path_factory.mktemp("bundle") / "pet"
    return model, export_bundle(model, get_task("pet-lesion"), out, info, ["lesion"])


def test_manifest_describes_the_model(pet_bundle: tuple[MultiTaskUNet, ModelBundle]) -> None:
    _, bundle = pet_bundle
    manifest = ModelBundle.load(bundle.path).manifest
    assert manifest.name == "fedseg-pet-lesion" and manifest.version == "0.0.1"
    assert manifest.modality == "PT" and manifest.num_classes == 2
    lesion = manifest.label_table().by_name("lesion")
    assert lesion.type.code == "108369006"  # SNOMED CT Neoplasm
    assert manifest.spacing == get_task("pet-lesion").spacing
    assert manifest.normalisation.kind.value == "suv"
    assert manifest.provenance.training_sites == ["site-01"]
    assert (
        len(manifest.provenance.git_commit) in (40, 7)
        or manifest.provenance.git_commit == "unknown"
    )


def test_onnx_matches_torch_on_real_pet(
    pet_bundle: tuple[MultiTaskUNet, ModelBundle], data_dir: DataDir
) -> None:
    model, bundle = pet_bundle
    volume = read_volume(data_dir("sts-pet/ibsi_validation/dicom/STS_003/PET/image"))
    prepared = prepare(volume, bundle.manifest, values=volume.array)  # already SUV (GML)
    image = prepared.image[:, :16, :16, :16]
    assert image.shape == (1, 16, 16, 16) and float(image.std()) > 0
    session = onnxruntime.InferenceSession(
        str(bundle.model_path), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": image[None]})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(image[None]), "pet-lesion").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_service_runs_the_exported_bundle(
    pet_bundle: tuple[MultiTaskUNet, ModelBundle], data_dir: DataDir
) -> None:
    _, bundle = pet_bundle
    volume = read_volume(data_dir("sts-pet/ibsi_validation/dicom/STS_003/PET/image"))
    result = Segmenter(bundle).segment(volume)
    assert result.labels.shape == volume.shape
    assert result.labels.max() <= 1


def test_head_and_label_table_must_agree(tmp_path: Path) -> None:
    model = _model({"pet-lesion": 3})
    with pytest.raises(ModelBundleError, match="has 3 outputs but the label table needs 2"):
        export_bundle(model, get_task("pet-lesion"), tmp_path / "bad", ExportInfo(), ["lesion"])
    assert not (tmp_path / "bad").exists()


def test_a_head_trained_on_another_label_order_is_refused(tmp_path: Path) -> None:
    task = get_task("ct-organs")
    model = _model({"ct-organs": task.num_classes})
    swapped = list(task.label_names)
    swapped[2], swapped[3] = swapped[3], swapped[2]  # kidney_right before kidney_left
    with pytest.raises(ModelBundleError, match="trained with classes liver, spleen, kidney_right"):
        export_bundle(model, task, tmp_path / "bad", ExportInfo(), swapped)
    assert not (tmp_path / "bad").exists()


def test_training_takes_its_labels_from_the_service_tables() -> None:
    from service.labels import get_table

    for name in ("ct-organs", "pet-lesion", "mr-tumour"):
        table = get_table(name)
        task = get_task(name)
        assert task.labels == {e.number: e.name for e in table.labels}
        assert task.name == table.task
    with pytest.raises(ValueError, match="unknown task 'body'"):
        get_task("body")  # a label table, not a trainable task


def test_an_export_that_differs_from_torch_is_refused() -> None:
    """The parity rule of every export: a NaN or a wrong network never becomes a bundle."""
    from training.export import check_parity, onnx_bytes

    model = _model({"pet-lesion": 2})
    patch = get_task("pet-lesion").patch_size
    data = onnx_bytes(model, "pet-lesion", patch)
    assert check_parity(model, "pet-lesion", data, patch).accepted
    other = _model({"pet-lesion": 2})
    with torch.no_grad():
        first = next(other.parameters())
        first.mul_(-1.0)  # another network: same graph, other weights
        report = check_parity(other, "pet-lesion", onnx_bytes(other, "pet-lesion", patch), patch)
        assert report.accepted
        with pytest.raises(ModelBundleError, match=r"ONNX export of pet-lesion: the ONNX export"):
            check_parity(model, "pet-lesion", onnx_bytes(other, "pet-lesion", patch), patch)
        first.fill_(float("nan"))
        with pytest.raises(ModelBundleError, match="non-finite"):
            check_parity(model, "pet-lesion", onnx_bytes(other, "pet-lesion", patch), patch)
