"""Sliding-window prediction with Gaussian blending, equivalent to MONAI's.

Window placement, padding and the Gaussian importance map follow
``monai.inferers.sliding_window_inference`` (MONAI 1.x) so that the same model gives the same
output within float32 rounding; ``tests/training`` checks this against MONAI itself.

Memory: the output accumulator (classes × volume, float32) and one weight volume are the only
full-size arrays; windows are processed in batches and added in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]  # (B, C, *patch) -> (B, K, *patch)
Progress = Callable[[int, int], None]  # (windows done, windows total)


class BlendMode(StrEnum):
    """How overlapping window outputs are weighted."""

    GAUSSIAN = "gaussian"
    CONSTANT = "constant"


@dataclass(frozen=True)
class SlidingWindowConfig:
    """Window size, overlap, batching and blending of sliding-window prediction."""

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    batch_size: int = 2
    mode: BlendMode = BlendMode.GAUSSIAN
    sigma_scale: float = 0.125
    pad_value: float = 0.0

    def __post_init__(self) -> None:
        if len(self.patch_size) != 3 or any(int(p) < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be three positive integers, got {self.patch_size}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        object.__setattr__(self, "mode", BlendMode(self.mode))


def importance_map(
    patch_size: Sequence[int], mode: BlendMode = BlendMode.GAUSSIAN, sigma_scale: float = 0.125
) -> np.ndarray:
    """Weights of one window's voxels (MONAI ``compute_importance_map``), float32."""
    if mode is BlendMode.CONSTANT:
        return np.ones(tuple(patch_size), dtype=np.float32)
    weights = np.ones((), dtype=np.float32)
    for size in patch_size:
        x = np.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=np.float32)
        sigma = np.float32(size * sigma_scale)
        g = np.exp(x**2 / (np.float32(-2.0) * sigma**2)).astype(np.float32)
        weights = np.multiply.outer(weights, g).astype(np.float32)
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def _scan_interval(image: Sequence[int], patch: Sequence[int], overlap: float) -> list[int]:
    out = []
    for size, roi in zip(image, patch, strict=True):
        out.append(int(roi) if roi == size else max(int(roi * (1 - overlap)), 1))
    return out


def window_starts(
    image_size: Sequence[int], patch_size: Sequence[int], overlap: float
) -> list[tuple[int, int, int]]:
    """Start corner of every window, in MONAI's ``dense_patch_slices`` order."""
    interval = _scan_interval(image_size, patch_size, overlap)
    per_axis: list[list[int]] = []
    for size, roi, step in zip(image_size, patch_size, interval, strict=True):
        count = math.ceil(size / step)
        n = next((d for d in range(count) if d * step + roi >= size), count - 1) + 1
        per_axis.append([i * step - max(i * step + roi - size, 0) for i in range(n)])
    grid = np.meshgrid(*per_axis, indexing="ij")
    return [(int(a), int(b), int(c)) for a, b, c in zip(*(g.ravel() for g in grid), strict=True)]


def _pad(image: np.ndarray, patch: Sequence[int], value: float) -> tuple[np.ndarray, list[int]]:
    pads = [(0, 0)]
    before = []
    for size, roi in zip(image.shape[1:], patch, strict=True):
        diff = max(roi - size, 0)
        pads.append((diff // 2, diff - diff // 2))
        before.append(diff // 2)
    if any(p != (0, 0) for p in pads):
        image = np.pad(image, pads, mode="constant", constant_values=value)
    return image, before


def sliding_window(
    image: np.ndarray,
    predict: Predictor,
    config: SlidingWindowConfig,
    progress: Progress | None = None,
) -> np.ndarray:
    """Predict a ``(C, X, Y, Z)`` image window by window; returns ``(K, X, Y, Z)`` float32."""
    if image.ndim != 4:
        raise ValueError(f"image must be (channels, x, y, z), got shape {image.shape}")
    original = image.shape[1:]
    padded, before = _pad(image.astype(np.float32, copy=False), config.patch_size, config.pad_value)
    size = padded.shape[1:]
    patch = tuple(min(p, s) for p, s in zip(config.patch_size, size, strict=True))
    weights = importance_map(patch, config.mode, config.sigma_scale)
    starts = window_starts(size, patch, config.overlap)
    output: np.ndarray | None = None
    count = np.zeros(size, dtype=np.float32)
    for first in range(0, len(starts), config.batch_size):
        batch_starts = starts[first : first + config.batch_size]
        batch = np.stack([padded[(slice(None), *_window(s, patch))] for s in batch_starts])
        result = np.asarray(predict(batch), dtype=np.float32)
        if output is None:
            output = np.zeros((result.shape[1], *size), dtype=np.float32)
            weighted = np.empty(result.shape[1:], dtype=np.float32)  # reused for every window
        for start, window_out in zip(batch_starts, result, strict=True):
            region = _window(start, patch)
            np.multiply(window_out, weights, out=weighted)
            output[(slice(None), *region)] += weighted
            count[region] += weights
        if progress is not None:
            progress(min(first + config.batch_size, len(starts)), len(starts))
    assert output is not None
    output /= count
    crop = tuple(slice(b, b + n) for b, n in zip(before, original, strict=True))
    return np.ascontiguousarray(output[(slice(None), *crop)])


def _window(start: Sequence[int], patch: Sequence[int]) -> tuple[slice, slice, slice]:
    return (
        slice(start[0], start[0] + patch[0]),
        slice(start[1], start[1] + patch[1]),
        slice(start[2], start[2] + patch[2]),
    )


def mirrored(predict: Predictor, axes: Sequence[int] = (0, 1, 2)) -> Predictor:
    """Test-time augmentation: average predictions over mirroring along each spatial axis."""

    def run(batch: np.ndarray) -> np.ndarray:
        total = np.asarray(predict(batch), dtype=np.float32)
        for axis in axes:
            flipped = np.flip(batch, axis=2 + axis)
            total += np.flip(np.asarray(predict(np.ascontiguousarray(flipped))), axis=2 + axis)
        return total / (1 + len(axes))

    return run
