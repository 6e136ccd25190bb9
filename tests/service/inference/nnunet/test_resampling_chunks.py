"""Chunked resampling (slabs with a spline-prefilter halo) against nnU-Net's whole-volume code.

Bounds: float64 input agrees with nnU-Net to 1e-12 of the input's range (the halo's truncation
is ≈ 1e-14 of the magnitude, see ``spline_halo``); float32 output, which nnU-Net rounds from the
same float64 values, is within one float32 step of it; a slab that spans the whole axis is
equal bit for bit.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from service.inference.nnunet.resampling import (
    compute_new_shape,
    resample,
    resample_channel_chunks,
    separate_z_axis,
    spline_halo,
    zoom_rows,
)

from .conftest import require_nnunet

SHAPE = (96, 10, 12)  # axis 0 longer than a chunk plus two halos: inner slab borders exist
# (current spacing, new spacing): 3D down- and up-sampling, separate z along axes 2 and 0.
SPACINGS = [
    ((1.0, 1.0, 1.0), (1.5, 1.3, 0.8)),
    ((1.0, 1.0, 1.0), (0.7, 1.2, 1.1)),
    ((1.0, 1.0, 4.0), (1.5, 0.8, 1.5)),
    ((4.0, 1.0, 1.0), (1.5, 1.2, 0.9)),
]
CHUNKS = [1, 7, None]  # one row, a size that divides neither output length, the default


def _volume(kind: str, dtype: type) -> np.ndarray:
    if kind == "random":
        data = np.random.default_rng(5).normal(size=(1, *SHAPE))
    else:
        i, j, k = np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij")
        data = (100 * np.sin(i / 9.0) * np.cos(j / 4.0) + 0.5 * k**1.5)[None]
    return data.astype(dtype)


def _reference(
    data: np.ndarray, spacing: tuple[float, ...], new_spacing: tuple[float, ...], order: int
) -> tuple[np.ndarray, tuple[int, int, int]]:
    from nnunetv2.preprocessing.resampling.default_resampling import (
        resample_data_or_seg_to_shape,
    )

    new_shape = compute_new_shape(data.shape[1:], spacing, new_spacing)
    expected = resample_data_or_seg_to_shape(
        data, new_shape, spacing, new_spacing, False, order, 0, None
    )
    return expected, new_shape


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize(("spacing", "new_spacing"), SPACINGS)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunks_match_nnunet_in_float64(
    kind: str,
    spacing: tuple[float, float, float],
    new_spacing: tuple[float, float, float],
    chunk: int | None,
) -> None:
    require_nnunet()
    data = _volume(kind, np.float64)
    expected, new_shape = _reference(data, spacing, new_spacing, 3)
    axis = separate_z_axis(None, spacing, new_spacing)
    out = resample(data, new_shape, axis, 3, chunk=chunk)
    assert out.dtype == expected.dtype == np.float64
    scale = float(data.max() - data.min())
    assert np.abs(out - expected).max() <= 1e-12 * scale
    if axis is not None:  # whole planes in-plane, whole slices across: nnU-Net's numbers
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(("spacing", "new_spacing"), SPACINGS)
@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunks_match_nnunet_in_float32(
    spacing: tuple[float, float, float], new_spacing: tuple[float, float, float], chunk: int | None
) -> None:
    require_nnunet()
    data = _volume("smooth", np.float32)
    expected, new_shape = _reference(data, spacing, new_spacing, 3)
    out = resample(data, new_shape, separate_z_axis(None, spacing, new_spacing), 3, chunk=chunk)
    assert out.dtype == expected.dtype == np.float32
    step = np.spacing(np.abs(expected))
    assert np.all(np.abs(out - expected) <= step)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_volume_shorter_than_the_halo_is_identical(order: int) -> None:
    """Every slab of a 20-row volume reaches both true edges: scipy's own numbers."""
    require_nnunet()
    assert spline_halo(order) >= 20 or order < 2
    data = np.random.default_rng(6).normal(size=(1, 20, 9, 11)).astype(np.float32)
    spacing, new_spacing = (1.0, 1.0, 1.0), (0.65, 1.4, 0.9)
    expected, new_shape = _reference(data, spacing, new_spacing, order)
    for chunk in (1, 4, None):
        np.testing.assert_array_equal(resample(data, new_shape, None, order, chunk=chunk), expected)


def _slabs(image: np.ndarray, shape: tuple[int, ...], chunk: int, halo: int | None) -> np.ndarray:
    return np.concatenate(
        [
            zoom_rows(image, shape, 3, (start, min(start + chunk, shape[0])), halo)
            for start in range(0, shape[0], chunk)
        ]
    )


def test_halo_is_needed() -> None:
    """Slabs without enough real rows around them give the prefilter's truncation error."""
    from scipy import ndimage

    image = np.random.default_rng(7).normal(size=SHAPE)
    shape = (64, 8, 15)
    whole = ndimage.zoom(
        image, np.divide(shape, SHAPE), output=np.float64, order=3, mode="nearest", grid_mode=True
    )
    scale = float(image.max() - image.min())

    def error(halo: int | None) -> float:
        return float(np.abs(_slabs(image, shape, 7, halo) - whole).max()) / scale

    assert spline_halo(3) == 27  # ceil(log(1e-15) / log(2 - sqrt(3)))
    assert error(None) <= 1e-13
    # Measured: ≈ 2e-15 at 27 rows, 5e-15 at 20, 2e-10 at 12 (|z| ≈ 0.27 per row).
    assert error(spline_halo(3) - 15) > 1e-11
    assert error(2) > 1e-6
    assert error(0) > 1e-3


def test_a_chunk_reads_only_its_slab() -> None:
    """Rows beyond a middle chunk's slab (NaN here) do not reach its values."""
    image = np.random.default_rng(8).normal(size=(200, 6, 7))
    shape = (150, 5, 9)
    rows = (70, 80)  # input rows ≈ 93…107, slab ≈ 62…138 with the halo
    expected = zoom_rows(image, shape, 3, rows)
    corrupted = image.copy()
    corrupted[:55] = np.nan
    corrupted[145:] = np.nan
    np.testing.assert_array_equal(zoom_rows(corrupted, shape, 3, rows), expected)
    assert np.isnan(zoom_rows(corrupted, shape, 3, (0, 5))).any()  # the NaN rows do matter


def test_memory_is_one_slab() -> None:
    """The traced peak is the output plus one slab, far below scipy's whole float64 copy."""
    data = np.random.default_rng(9).normal(size=(1, 600, 40, 40)).astype(np.float32)
    new_shape = (400, 27, 27)
    whole_coefficients = (600 + 24) * (40 + 24) ** 2 * 8  # what scipy's zoom allocates
    tracemalloc.start()
    try:
        resample(data, new_shape, None, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_coefficients / 2


@pytest.mark.parametrize("axis", [None, 0, 1, 2])
def test_unchanged_shape_chunks_cover_the_separate_axis(axis: int | None) -> None:
    """Chunks of an unchanged shape run along the separate axis over its whole length."""
    channel = np.random.default_rng(10).normal(size=(5, 9, 23)).astype(np.float16)
    out = np.full(channel.shape, np.nan)
    for index, values in resample_channel_chunks(channel, channel.shape, axis, 1, chunk=4):
        assert np.isnan(out[index]).all()  # no voxel twice
        out[index] = values
    np.testing.assert_array_equal(out, channel.astype(np.float64))
