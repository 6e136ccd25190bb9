"""Cropping, normalisation and the whole preprocessing against nnunetv2's own code."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from service.inference.nnunet.preprocessing import (
    crop_to_nonzero,
    nonzero_bbox,
    normalise,
    preprocess,
)
from service.inference.nnunet.recipe import ChannelNormalisation, NnunetRecipe

from .conftest import (
    CT_STATS,
    PLACEHOLDER_FOLD,
    ct_volume,
    dataset_json,
    plans,
    recipe_block,
    require_nnunet,
)


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


@pytest.mark.parametrize("seed", range(4))
def test_box_and_mask_of_blobs_match_nnunet(seed: int) -> None:
    """Random blobs and a closed shell (a hole): nnU-Net's box and mask.

    The box is read 1, 3 and 16 rows at a time and the mask filled inside the box only; nnU-Net
    fills the whole volume's mask.
    """
    require_nnunet()
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero as reference
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    blobs = ndimage.gaussian_filter(rng.normal(size=(2, 30, 26, 22)), (0, 2, 2, 2)) > 0.12
    i, j, k = np.meshgrid(*(np.arange(n) for n in (30, 26, 22)), indexing="ij")
    centre = rng.integers((9, 6, 6), (24, 14, 14))
    radius = np.sqrt((i - centre[0]) ** 2 + (j - centre[1]) ** 2 + (k - centre[2]) ** 2)
    blobs[seed % 2] |= (radius >= 3) & (radius < 5)  # a closed shell: a hole to fill
    blobs[:, (radius < 3) & (k > centre[2])] = False  # half the hole stays empty in both
    data = np.where(blobs, rng.normal(size=blobs.shape) + 3, 0).astype(np.float32)
    data[:, :4] = 0
    data[:, :, -5:] = 0
    expected, seg, bbox = reference(data.copy())
    box = [list(map(int, b)) for b in bbox]
    for rows in (1, 3, 16):
        assert [list(b) for b in nonzero_bbox(data, rows)] == box
    cropped, inside, _ = crop_to_nonzero(data)
    np.testing.assert_array_equal(cropped, expected)
    np.testing.assert_array_equal(inside, seg[0] >= 0)
    assert (seg[0] >= 0).sum() > (expected != 0).any(axis=0).sum()  # some holes were filled
    assert crop_to_nonzero(data, with_mask=False)[1] is None


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
    assert inside is not None
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
    model = NnunetRecipe.from_dict(recipe_block([PLACEHOLDER_FOLD])).models[0]
    image, geometry = preprocess(data, spacing, model)
    np.testing.assert_array_equal(image, expected)
    assert geometry.shape_before_cropping == tuple(properties["shape_before_cropping"])
    assert [list(b) for b in geometry.bbox] == [
        list(map(int, b)) for b in properties["bbox_used_for_cropping"]
    ]
    assert geometry.shape_after_cropping == tuple(
        properties["shape_after_cropping_and_before_resampling"]
    )


SCHEMES = [
    {"scheme": "CTNormalization", "use_mask_for_norm": False},
    {"scheme": "ZScoreNormalization", "use_mask_for_norm": True},
    {"scheme": "ZScoreNormalization", "use_mask_for_norm": False},
    {"scheme": "RescaleTo01Normalization", "use_mask_for_norm": False},
    {"scheme": "NoNormalization", "use_mask_for_norm": False},
]


@pytest.mark.parametrize("second", SCHEMES, ids=lambda c: f"{c['scheme']}-{c['use_mask_for_norm']}")
def test_long_two_channel_case_matches_default_preprocessor(second: dict[str, object]) -> None:
    """A CT channel and each scheme, long enough for inner slab borders: nnU-Net's numbers.

    110 → 36 rows in two slabs: one float32 step from nnU-Net at most, nearly all equal.
    """
    require_nnunet()
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    rng = np.random.default_rng(11)
    data = np.stack(
        [rng.normal(40, 300, size=(110, 26, 22)), rng.normal(5, 2, size=(110, 26, 22))]
    ).astype(np.float32)
    data[:, :3] = 0  # a zero border, cropped away
    data[:, :, -4:] = 0
    data[:, 50:53, 10:13, 8:11] = 0  # a hole: inside the filled mask
    spacing = (1.0, 1.2, 1.1)  # SimpleITK order
    stats = {k: CT_STATS[k] for k in ("mean", "std", "percentile_00_5", "percentile_99_5")}
    configs = [{**SCHEMES[0], **stats}, {**second, **(stats if "CT" in str(second) else {})}]
    plan = copy.deepcopy(plans())
    config = plan["configurations"]["3d_fullres"]
    config["normalization_schemes"] = [str(c["scheme"]) for c in configs]
    config["use_mask_for_norm"] = [bool(c["use_mask_for_norm"]) for c in configs]
    plan["foreground_intensity_properties_per_channel"] = {"0": CT_STATS, "1": CT_STATS}
    dataset = {**dataset_json(), "channel_names": {"0": "CT", "1": "other"}}
    manager = PlansManager(plan)
    expected, _, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        data.copy(),
        None,
        {"spacing": list(spacing)},
        manager,
        manager.get_configuration("3d_fullres"),
        dataset,
    )
    block = recipe_block([PLACEHOLDER_FOLD], normalisation=configs)
    block["channels"] = [{"name": "CT", "modality": "CT"}, {"name": "other", "modality": "MR"}]
    model = NnunetRecipe.from_dict(block).models[0]
    before = data.copy()
    image, geometry = preprocess(data, spacing, model)
    np.testing.assert_array_equal(data, before)  # the caller's array is not touched
    assert geometry.shape_after_cropping[0] == 107 and image.shape == expected.shape
    assert image.dtype == expected.dtype == np.float32
    assert np.all(np.abs(image - expected) <= np.spacing(np.abs(expected)))
    assert (image == expected).mean() > 0.999
