"""Cropping, normalisation and the whole preprocessing against nnunetv2's own code."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from service.inference.nnunet.preprocessing import crop_to_nonzero, normalise, preprocess
from service.inference.nnunet.recipe import ChannelNormalisation, NnunetRecipe

from .conftest import CT_STATS, ct_volume, dataset_json, plans, recipe_block, require_nnunet

_FOLD = {
    "fold": 0,
    "onnx": "m/fold_0.onnx",
    "onnx_sha256": "0" * 64,
    "checkpoint": "checkpoint_final.pth",
    "checkpoint_sha256": "0" * 64,
}


def _image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (2, 10, 12, 14) image with a zero border and a hole inside; its non-zero mask."""
    rng = np.random.default_rng(seed)
    data = rng.normal(50, 30, size=(2, 10, 12, 14)).astype(np.float32)
    data[:, :2] = 0
    data[:, :, -3:] = 0
    data[:, 5, 6, 7] = 0  # a hole: filled, so inside the mask
    data[1, 4, 4, 4] = 0  # zero in one channel only: still non-zero
    return data, data[0] != 0


def test_crop_to_nonzero_matches_nnunet() -> None:
    require_nnunet()
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero as reference

    data, _ = _image()
    expected, seg, bbox = reference(data.copy())
    cropped, inside, box = crop_to_nonzero(data)
    np.testing.assert_array_equal(cropped, expected)
    assert [list(b) for b in box] == [list(map(int, b)) for b in bbox]
    np.testing.assert_array_equal(inside, seg[0] >= 0)


def test_empty_image_is_not_cropped() -> None:
    cropped, _, box = crop_to_nonzero(np.zeros((1, 4, 5, 6), dtype=np.float32))
    assert cropped.shape == (1, 4, 5, 6)
    assert box == ((0, 4), (0, 5), (0, 6))


@pytest.mark.parametrize(
    "config",
    [
        {
            "scheme": "CTNormalization",
            **{k: CT_STATS[k] for k in ("mean", "std", "percentile_00_5", "percentile_99_5")},
        },
        {"scheme": "ZScoreNormalization", "use_mask_for_norm": False},
        {"scheme": "ZScoreNormalization", "use_mask_for_norm": True},
        {"scheme": "RescaleTo01Normalization"},
        {"scheme": "NoNormalization"},
    ],
    ids=["ct", "zscore", "zscore-mask", "rescale", "none"],
)
def test_normalisation_matches_nnunet(config: dict[str, object]) -> None:
    require_nnunet()
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    data, _ = _image(3)
    data[0] *= 20  # a CT-like range that the percentiles clip
    cropped, inside, _ = crop_to_nonzero(data)
    seg = np.where(inside, 0, -1)
    kind = getattr(schemes, str(config["scheme"]))
    mask = bool(config.get("use_mask_for_norm", False))
    expected = kind(use_mask_for_norm=mask, intensityproperties=CT_STATS).run(
        cropped[0].copy(), seg
    )
    out = normalise(np.array(cropped[0]), ChannelNormalisation.from_dict(config, "n"), inside)
    np.testing.assert_array_equal(out, expected)


def test_preprocess_matches_default_preprocessor() -> None:
    """Transpose, crop, normalise and resample as ``DefaultPreprocessor.run_case_npy``."""
    require_nnunet()
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    volume = ct_volume()
    data = volume.array.transpose(2, 1, 0)[None]
    spacing = (4.0, 1.2, 1.2)  # SimpleITK order (k, j, i)
    manager = PlansManager(copy.deepcopy(plans()))
    expected, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
        data.copy(),
        None,
        {"spacing": list(spacing)},
        manager,
        manager.get_configuration("3d_fullres"),
        dataset_json(),
    )
    model = NnunetRecipe.from_dict(recipe_block([_FOLD])).models[0]
    image, geometry = preprocess(data, spacing, model)
    np.testing.assert_array_equal(image, expected)
    assert geometry.shape_before_cropping == tuple(properties["shape_before_cropping"])
    assert [list(b) for b in geometry.bbox] == [
        list(map(int, b)) for b in properties["bbox_used_for_cropping"]
    ]
    assert geometry.shape_after_cropping == tuple(
        properties["shape_after_cropping_and_before_resampling"]
    )
