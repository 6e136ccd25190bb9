from __future__ import annotations

import numpy as np
import pytest

from service.inference.sliding_window import (
    BlendMode,
    SlidingWindowConfig,
    importance_map,
    mirrored,
    sliding_window,
    window_starts,
)

W = np.array([[0.5, -1.0], [2.0, 0.25], [-0.3, 0.7]], dtype=np.float32)
B = np.array([0.1, -0.2, 0.3], dtype=np.float32)


def pointwise(batch: np.ndarray) -> np.ndarray:
    """A position-independent network: blending must return exactly its direct output."""
    return np.einsum("kc,bcxyz->bkxyz", W, batch) + B[None, :, None, None, None]


@pytest.mark.parametrize("shape", [(2, 37, 29, 23), (2, 8, 9, 10), (2, 16, 16, 16)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("mode", list(BlendMode))
def test_blending_reproduces_a_pointwise_network(
    shape: tuple[int, ...], overlap: float, mode: BlendMode
) -> None:
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    config = SlidingWindowConfig(patch_size=(16, 12, 10), overlap=overlap, batch_size=3, mode=mode)
    out = sliding_window(image, pointwise, config)
    assert out.shape == (3, *shape[1:])
    np.testing.assert_allclose(out, pointwise(image[None])[0], atol=1e-5)


def test_windows_cover_the_image_and_end_at_its_edge() -> None:
    starts = window_starts((37, 29, 23), (16, 12, 10), 0.5)
    covered = np.zeros((37, 29, 23), dtype=bool)
    for s in starts:
        covered[s[0] : s[0] + 16, s[1] : s[1] + 12, s[2] : s[2] + 10] = True
    assert covered.all()
    assert max(s[0] for s in starts) == 37 - 16
    # MONAI's interval: int(16 * 0.5) = 8 → starts 0, 8, 16, 21 along the first axis.
    assert sorted({s[0] for s in starts}) == [0, 8, 16, 21]


def test_gaussian_importance_map_shape_and_floor() -> None:
    weights = importance_map((9, 8, 7))
    assert weights.shape == (9, 8, 7) and weights.dtype == np.float32
    assert weights[4, 3:5, 3].max() == pytest.approx(weights.max())
    np.testing.assert_allclose(weights, weights[::-1, ::-1, ::-1])  # symmetric
    assert weights.min() >= 1e-3 - 1e-9
    assert weights[0, 0, 0] < weights[4, 4, 3]


def test_mirroring_keeps_a_symmetric_network_unchanged() -> None:
    image = np.random.default_rng(2).normal(size=(1, 2, 10, 11, 12)).astype(np.float32)
    np.testing.assert_allclose(mirrored(pointwise)(image), pointwise(image), atol=1e-6)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap must be in"):
        SlidingWindowConfig(patch_size=(8, 8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="patch_size must be three positive"):
        SlidingWindowConfig(patch_size=(8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image must be"):
        sliding_window(np.zeros((8, 8, 8)), pointwise, SlidingWindowConfig((4, 4, 4)))
