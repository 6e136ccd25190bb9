"""Shrinking planned nnU-Net plans to a small CPU network (no torch needed)."""

from __future__ import annotations

import pytest

from training.nnunet.federated_plans import SharedPlans, small_network


def _plans() -> dict:
    arch = {"n_stages": 5, "features_per_stage": [32, 64, 128, 256, 320]}
    config = {"patch_size": [40, 72, 40], "batch_size": 2, "spacing": [5.5, 3.3, 5.5]}
    config["architecture"] = {"arch_kwargs": arch}
    return {"configurations": {"3d_fullres": config, "2d": {}}, "transpose_forward": [1, 0, 2]}


def test_small_network_keeps_spacing_and_sets_stages_features_and_patch() -> None:
    shared = SharedPlans(_plans(), {}, {})
    small = shared.with_small_network((8, 16, 32), (32, 48, 32))
    config = small.plans["configurations"]["3d_fullres"]
    arch = config["architecture"]["arch_kwargs"]
    assert list(small.plans["configurations"]) == ["3d_fullres"]
    assert arch["n_stages"] == 3 and arch["features_per_stage"] == [8, 16, 32]
    assert arch["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2]]
    assert arch["n_conv_per_stage_decoder"] == [1, 1]
    assert config["patch_size"] == [32, 48, 32] and config["spacing"] == [5.5, 3.3, 5.5]
    # the original plans are untouched
    assert shared.plans["configurations"]["3d_fullres"]["patch_size"] == [40, 72, 40]


def test_two_stages_are_refused() -> None:
    # nnU-Net's trainer would weight its single deep-supervision output 0 and divide by 0
    with pytest.raises(ValueError, match="at least three stages"):
        small_network(_plans(), (4, 8), (16, 16, 16))
