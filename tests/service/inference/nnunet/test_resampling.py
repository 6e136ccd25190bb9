"""nnU-Net's default resampling, step by step against nnunetv2's own functions."""

from __future__ import annotations

import numpy as np
import pytest

from service.inference.nnunet.resampling import compute_new_shape, resample, separate_z_axis

from .conftest import require_nnunet

# (shape, current spacing, new spacing, force_separate_z): separate z along each axis, 3D,
# unchanged shape, forced on and off, and the "two low-resolution axes" rule.
CASES = [
    ((9, 20, 22), (5.0, 1.0, 1.2), (2.0, 1.5, 1.5), None),
    ((20, 9, 22), (1.0, 5.0, 1.2), (1.5, 1.5, 1.5), None),
    ((20, 22, 9), (1.0, 1.1, 4.0), (1.5, 1.5, 1.5), None),
    ((12, 14, 16), (1.0, 1.0, 1.0), (1.5, 0.7, 1.3), None),
    ((12, 14, 16), (1.0, 1.0, 1.0), (3.5, 1.0, 1.0), None),
    ((12, 14, 16), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), None),
    ((12, 14, 16), (2.0, 1.0, 1.0), (1.0, 1.1, 0.9), True),
    ((9, 20, 22), (5.0, 1.0, 1.2), (2.0, 1.5, 1.5), False),
    ((12, 14, 16), (4.0, 4.0, 1.0), (1.5, 1.5, 1.5), None),
]


@pytest.mark.parametrize(("shape", "spacing", "new_spacing", "force"), CASES)
def test_separate_z_rule_and_shape(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    new_spacing: tuple[float, float, float],
    force: bool | None,
) -> None:
    require_nnunet()
    from nnunetv2.preprocessing.resampling import default_resampling as ref

    do_separate, axis = ref.determine_do_sep_z_and_axis(force, spacing, new_spacing, 3.0)
    assert separate_z_axis(force, spacing, new_spacing, 3.0) == (axis if do_separate else None)
    expected = tuple(int(v) for v in ref.compute_new_shape(shape, spacing, new_spacing))
    assert compute_new_shape(shape, spacing, new_spacing) == expected


@pytest.mark.parametrize(("shape", "spacing", "new_spacing", "force"), CASES)
def test_data_order_3_is_identical(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    new_spacing: tuple[float, float, float],
    force: bool | None,
) -> None:
    require_nnunet()
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    data = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    new_shape = compute_new_shape(shape, spacing, new_spacing)
    expected = resample_data_or_seg_to_shape(
        data, new_shape, spacing, new_spacing, False, 3, 0, force
    )
    axis = separate_z_axis(force, spacing, new_spacing)
    out = resample(data, new_shape, axis, 3)
    assert out.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("shape", "spacing", "new_spacing", "force"), CASES)
def test_float16_logits_order_1(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    new_spacing: tuple[float, float, float],
    force: bool | None,
) -> None:
    """Separate-z and unchanged shapes are identical; 3D linear is computed in chunks, which
    rounds its coordinates differently in the last bit: at most one float16 step apart."""
    require_nnunet()
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    logits = np.random.default_rng(2).normal(size=(3, *shape)).astype(np.float16)
    # Back from the network grid to the source grid: the roles of the spacings swap.
    new_shape = compute_new_shape(shape, spacing, new_spacing)
    expected = resample_data_or_seg_to_shape(
        logits, new_shape, spacing, new_spacing, False, 1, 0, force
    )
    axis = separate_z_axis(force, spacing, new_spacing)
    out = resample(logits, new_shape, axis, 1)
    assert out.dtype == expected.dtype == np.float16
    if axis is not None or tuple(shape) == tuple(new_shape):
        np.testing.assert_array_equal(out, expected)
    else:
        step = np.spacing(np.abs(expected)).astype(np.float32)
        assert np.all(np.abs(out.astype(np.float32) - expected.astype(np.float32)) <= step)
        assert (out == expected).mean() > 0.99
