"""Logits back to labels (resampling, argmax/regions, uncrop, transpose) and postprocessing,
against nnunetv2's export and connected-component code."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from service.inference.nnunet.export import keep_largest_component, logits_to_labels
from service.inference.nnunet.preprocessing import CaseGeometry
from service.inference.nnunet.recipe import NnunetRecipe
from service.inference.nnunet.resampling import compute_new_shape

from .conftest import (
    PLACEHOLDER_FOLD,
    SPACING,
    TRANSPOSE,
    dataset_json,
    plans,
    recipe_block,
    require_nnunet,
)

REGIONS = {"background": 0, "whole": [1, 2], "core": 2}


def _case(
    spacing: tuple[float, float, float], channels: int
) -> tuple[np.ndarray, CaseGeometry, dict[str, Any]]:
    """Random float16 logits on the network grid of a cropped case, and its properties."""
    before = (14, 40, 56)  # transposed order
    bbox = ((0, 14), (3, 37), (2, 54))
    cropped = tuple(b - a for a, b in bbox)
    spacing_t = tuple(spacing[a] for a in TRANSPOSE)
    resampled = compute_new_shape(cropped, spacing_t, SPACING)
    logits = np.random.default_rng(5).normal(size=(channels, *resampled)).astype(np.float16)
    geometry = CaseGeometry(
        spacing=(spacing_t[0], spacing_t[1], spacing_t[2]),
        shape_before_cropping=before,
        bbox=bbox,
        shape_after_cropping=(cropped[0], cropped[1], cropped[2]),
        shape_resampled=resampled,
    )
    properties = {
        "spacing": list(spacing),
        "shape_before_cropping": before,
        "bbox_used_for_cropping": [list(b) for b in bbox],
        "shape_after_cropping_and_before_resampling": cropped,
    }
    return logits, geometry, properties


def _reference(
    logits: np.ndarray, properties: dict[str, Any], dataset: dict[str, Any]
) -> np.ndarray:
    from nnunetv2.inference.export_prediction import (
        convert_predicted_logits_to_segmentation_with_correct_shape as convert,
    )
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(copy.deepcopy(plans()))
    configuration = manager.get_configuration("3d_fullres")
    labels = manager.get_label_manager(dataset)
    return np.asarray(convert(logits.copy(), manager, configuration, labels, properties, False, 1))


@pytest.mark.parametrize(
    "spacing", [(4.0, 1.2, 1.2), (2.0, 1.3, 1.4)], ids=["separate-z", "3d-linear"]
)
def test_softmax_labels_match_nnunet(spacing: tuple[float, float, float]) -> None:
    require_nnunet()
    logits, geometry, properties = _case(spacing, 4)
    expected = _reference(logits, properties, dataset_json())
    model = NnunetRecipe.from_dict(recipe_block([PLACEHOLDER_FOLD])).models[0]
    labels = logits_to_labels(logits, geometry, model)
    assert labels.shape == expected.shape
    equal = (labels == expected).mean()
    if spacing[0] == 4.0:
        assert equal == 1.0  # the resampling is bit-identical here
    else:
        assert equal > 0.999, equal  # float16 ties decided by the last bit of a coordinate


def test_region_labels_match_nnunet() -> None:
    require_nnunet()
    logits, geometry, properties = _case((4.0, 1.2, 1.2), 2)
    dataset = {**dataset_json(), "labels": REGIONS, "regions_class_order": [1, 2]}
    expected = _reference(logits, properties, dataset)
    block = recipe_block(
        [PLACEHOLDER_FOLD],
        labels=REGIONS,
        regions_class_order=[1, 2],
        label_map={"1": 1, "2": 2},
        postprocessing=[],
    )
    model = NnunetRecipe.from_dict(block).models[0]
    labels = logits_to_labels(logits, geometry, model)
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(labels)) == {0, 1, 2}


def _blobs() -> np.ndarray:
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[2:6, 2:6, 2:6] = 1  # 64 voxels
    labels[10:14, 10:14, 10:14] = 1  # 64: a tie, both kept
    labels[16:18, 16:18, 16:18] = 1  # 8
    labels[6, 6, 6] = 1  # touches the first blob by a corner: 26-connected
    labels[2:5, 15:18, 2:5] = 2  # 27
    labels[8:9, 1:2, 1:2] = 2  # 1
    labels[15:19, 2:4, 15:19] = 3  # 32, touching nothing
    return labels


@pytest.mark.parametrize("targets", [[1], [2], [(1, 2)], [1, 3], [(2, 3)], [4]])
def test_largest_component_matches_nnunet(targets: list[int | tuple[int, ...]]) -> None:
    require_nnunet()
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation as reference,
    )

    labels = _blobs()
    expected = reference(labels.copy(), [t if isinstance(t, int) else tuple(t) for t in targets])
    out = keep_largest_component(labels.copy(), targets)
    np.testing.assert_array_equal(out, expected)
