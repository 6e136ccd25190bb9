"""Tiles, Gaussian, padding and blended logits against nnunetv2's sliding window."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ModelOutputError
from service.inference.bundle import ModelBundle
from service.inference.nnunet.sliding_window import (
    WindowSettings,
    compute_gaussian,
    compute_steps,
    pad_to_patch,
    predict_logits,
    stream_folds,
)
from service.inference.session import Device, SessionOptions, open_model

from .conftest import PATCH, TinyModel, require_nnunet


@pytest.mark.parametrize("tile", [(16, 32, 32), (15, 20, 9), (40, 96, 80)])
def test_gaussian_matches_nnunet(tile: tuple[int, int, int]) -> None:
    require_nnunet()
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian as reference

    expected = reference(tile, 1.0 / 8, 10, dtype=torch.float16, device=torch.device("cpu"))
    out = compute_gaussian(tile, 1.0 / 8, 10)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, expected.numpy())


@pytest.mark.parametrize(
    ("size", "tile", "step"),
    [
        ((19, 42, 32), (16, 32, 32), 0.5),
        ((200, 311, 95), (128, 128, 80), 0.5),
        ((64, 64, 64), (32, 40, 64), 0.3),
    ],
)
def test_tile_positions_match_nnunet(
    size: tuple[int, ...], tile: tuple[int, ...], step: float
) -> None:
    require_nnunet()
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    assert compute_steps(size, tile, step) == compute_steps_for_sliding_window(size, tile, step)


def test_padding_matches_nnunet() -> None:
    require_nnunet()
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    image = np.random.default_rng(0).normal(size=(2, 11, 40, 7)).astype(np.float32)
    expected, revert = pad_nd_image(
        image, (16, 32, 32), "constant", {"constant_values": 0}, True, None
    )
    padded, ours = pad_to_patch(image, (16, 32, 32))
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(padded[(slice(None), *ours)], image)
    assert tuple(ours) == tuple(revert[1:])


@pytest.mark.parametrize("mirror", [False, True], ids=["no-mirroring", "mirroring"])
def test_blended_logits_match_nnunet(tiny_model: TinyModel, mirror: bool) -> None:
    """One fold's float16 logits: same tiles, Gaussian, mirror averaging and accumulation.

    The engines differ in float32 rounding (torch vs onnxruntime), which float16 mostly hides.
    """
    import torch

    image = np.random.default_rng(4).normal(size=(1, 19, 42, 30)).astype(np.float32)
    predictor = tiny_model.predictor(use_mirroring=mirror)
    predictor.network.load_state_dict(tiny_model.states[0])
    expected = predictor.predict_sliding_window_return_logits(torch.from_numpy(image)).numpy()
    model = open_model(
        ModelBundle.load(tiny_model.bundle).fold_paths()[0][0], SessionOptions(device=Device.CPU)
    )
    settings = WindowSettings(
        patch_size=(PATCH[0], PATCH[1], PATCH[2]),
        mirror_axes=tiny_model.mirror_axes if mirror else (),
        batch_size=4,
    )
    out = predict_logits(image, model.predict, settings)
    assert out.dtype == expected.dtype == np.float16
    assert out.shape == expected.shape
    np.testing.assert_allclose(
        out.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3
    )
    assert (out == expected).mean() > 0.95


@pytest.mark.parametrize("overflowing_class", [0, 2])
def test_float16_overflow_is_an_error(overflowing_class: int) -> None:
    """Logits beyond float16 after the Gaussian weighting are refused, in any class."""

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 3, *batch.shape[2:]), dtype=np.float32)
        out[:, overflowing_class] = 60000.0  # × the Gaussian's peak of 10: beyond float16
        return out

    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    with pytest.raises(FloatingPointError, match="float16 overflow"):
        predict_logits(image, predict, WindowSettings(patch_size=(8, 8, 8)))


def test_nan_logits_are_an_error_naming_the_channel() -> None:
    """nnU-Net only checks for infinities; a NaN would become an arbitrary label."""

    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 3, *batch.shape[2:]), dtype=np.float32)
        out[:, 1, 2, 3, 4] = np.nan
        return out

    image = np.zeros((1, 8, 8, 8), dtype=np.float32)
    with pytest.raises(ModelOutputError, match="NaN logits in output channel 1"):
        predict_logits(image, predict, WindowSettings(patch_size=(8, 8, 8)))
    with pytest.raises(ModelOutputError, match="NaN logits in output channel 1"):
        list(stream_folds(image, [predict], WindowSettings(patch_size=(8, 8, 8))))
