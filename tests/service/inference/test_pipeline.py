from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from service.dicom.volume import Volume
from service.errors import ConfigurationError
from service.inference.bundle import ModelBundle
from service.inference.pipeline import Segmenter
from service.inference.session import Device, SessionOptions

from .conftest import threshold_manifest


def _volume(affine: np.ndarray, shape: tuple[int, int, int], centres_mm: list[tuple]) -> Volume:
    """Background 1, spheres of value 8 and radius 12 mm at patient positions."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    points = np.stack([i, j, k, np.ones_like(i)], axis=-1) @ affine.T
    array = np.ones(shape, dtype=np.float32)
    for centre, radius in centres_mm:
        inside = np.linalg.norm(points[..., :3] - np.asarray(centre), axis=-1) <= radius
        array[inside] = 8.0
    return Volume(
        array=array,
        affine=affine,
        modality="PT",
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        frame_of_reference_uid="1.2.4",
        series_description="test",
        stack_label="",
        slices=(),
        headers=(Dataset(),),
    )


def _feet_first_affine() -> np.ndarray:
    # Feet-first supine: i → patient right (-x), j → posterior, k → inferior.
    affine = np.diag([-1.5, 1.5, -1.5, 1.0])
    affine[:3, 3] = (40.0, -30.0, 50.0)
    return affine


def test_segments_spheres_on_the_source_grid(make_bundle: Callable[..., Path]) -> None:
    affine = _feet_first_affine()
    volume = _volume(affine, (48, 44, 40), [((20.0, 0.0, 20.0), 12.0)])
    segmenter = Segmenter(ModelBundle.load(make_bundle()), SessionOptions(device=Device.CPU))
    result = segmenter.segment(volume)
    assert result.provider == "CPUExecutionProvider"
    assert result.labels.shape == volume.shape
    truth = volume.array > 4
    dice = 2 * (truth & (result.labels == 1)).sum() / (truth.sum() + (result.labels == 1).sum())
    assert dice > 0.95
    # No flip: the predicted centre of mass sits at the sphere's patient position.
    com = np.argwhere(result.labels == 1).mean(axis=0)
    np.testing.assert_allclose((affine @ np.array([*com, 1.0]))[:3], (20, 0, 20), atol=1.0)
    assert result.present == ["lesion"]
    assert set(result.timings) == {"preprocess", "infer", "postprocess"}


def test_postprocessing_filters_components(make_bundle: Callable[..., Path]) -> None:
    affine = _feet_first_affine()
    spheres = [((20.0, 0.0, 20.0), 12.0), ((-10.0, 20.0, 20.0), 5.0)]
    volume = _volume(affine, (48, 44, 40), spheres)
    plain = Segmenter(ModelBundle.load(make_bundle(name="plain"))).segment(volume)
    from scipy import ndimage

    assert ndimage.label(plain.labels == 1)[1] == 2
    largest = threshold_manifest(postprocessing={"largest_component": ["lesion"]})
    kept = Segmenter(ModelBundle.load(make_bundle(largest, "largest"))).segment(volume)
    assert ndimage.label(kept.labels == 1)[1] == 1
    assert (kept.labels == 1).sum() > 0.9 * (plain.labels == 1).sum() * (12**3 / (12**3 + 5**3))
    absent = threshold_manifest(postprocessing={"min_label_ml": 1e6})
    none = Segmenter(ModelBundle.load(make_bundle(absent, "absent"))).segment(volume)
    assert none.present == [] and not none.labels.any()


def test_required_gpu_fails_clearly_on_a_cpu_machine(make_bundle: Callable[..., Path]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a GPU provider is available here")
    with pytest.raises(ConfigurationError, match="device 'cuda' was required"):
        Segmenter(ModelBundle.load(make_bundle()), SessionOptions(device=Device.CUDA))


def test_session_options_are_checked_and_applied(make_bundle: Callable[..., Path]) -> None:
    with pytest.raises(ConfigurationError, match="intra-op -1"):
        SessionOptions(intra_op_threads=-1)
    bundle = ModelBundle.load(make_bundle())
    batch = np.random.default_rng(0).random((2, 1, 16, 16, 16), dtype=np.float32)
    spinning = Segmenter(bundle, SessionOptions(device=Device.CPU, intra_op_threads=2))
    quiet = Segmenter(
        bundle, SessionOptions(device=Device.CPU, intra_op_threads=1, allow_spinning=False)
    )
    np.testing.assert_array_equal(spinning.model.predict(batch), quiet.model.predict(batch))
