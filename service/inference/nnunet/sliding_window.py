"""nnU-Net's sliding-window prediction in numpy.

As ``inference/sliding_window_prediction.py`` and
``nnUNetPredictor._internal_predict_sliding_window_return_logits`` do it: same tiles, same
weights, same arithmetic as nnU-Net 2.8.1 on the CPU. The image is padded to at least the
patch (content centred, the odd voxel after), tiles start at :func:`compute_steps`, each
tile's output is averaged over the mirror combinations of
``mirror_axes`` (``itertools.combinations`` order, float32), multiplied by the Gaussian
(:func:`compute_gaussian`, float16 as nnU-Net keeps it), and added into a float16 logits
accumulator and a float16 weight sum, which then divide each other (float16). Folds run one
after the other and their float16 logits are summed and divided by the fold count.

Memory: :func:`predict_logits` keeps the float16 accumulator (classes × network grid) and the
float16 weight volume whole. :func:`stream_folds` gives the same numbers from windows of rows
(axis 0) instead: it runs the folds side by side, batch by batch, and hands rows on once no
tile reaches them any more, so it keeps classes × folds × (a patch plus a batch's row span) ×
the plane. Tiles and their mirrored copies go through the engine at most ``batch_size`` inputs
per call, so the engine's working set is bounded by the batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from service.errors import ModelOutputError

Predictor = Callable[[np.ndarray], np.ndarray]  # (B, C, *patch) float32 -> (B, K, *patch)
Progress = Callable[[int, int], None]
Tile = tuple[slice, slice, slice]
# Final rows of the network grid: (first row, float16 logits (K, rows, Y, Z)).
LogitRows = tuple[int, np.ndarray]


def compute_gaussian(
    tile_size: Sequence[int], sigma_scale: float = 1.0 / 8, value_scaling_factor: float = 1.0
) -> np.ndarray:
    """nnU-Net's ``compute_gaussian`` (float16): a blurred delta, peak ``value_scaling_factor``."""
    tmp = np.zeros(tuple(tile_size))
    tmp[tuple(i // 2 for i in tile_size)] = 1
    gaussian = gaussian_filter(
        tmp, [i * sigma_scale for i in tile_size], 0, mode="constant", cval=0
    )
    gaussian /= np.max(gaussian) / value_scaling_factor
    # torch converts float64 to float16 through float32 (two roundings); so does this.
    out = gaussian.astype(np.float32).astype(np.float16)
    zero = out == 0
    if zero.any():
        out[zero] = np.min(out[~zero])
    return out


def compute_steps(
    image_size: Sequence[int], tile_size: Sequence[int], tile_step_size: float
) -> list[list[int]]:
    """Tile start positions per axis (nnU-Net's ``compute_steps_for_sliding_window``)."""
    if not 0 < tile_step_size <= 1:
        raise ValueError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    steps = []
    for size, tile in zip(image_size, tile_size, strict=True):
        if size < tile:
            raise ValueError(
                f"image size {list(image_size)} is smaller than the tile {list(tile_size)}"
            )
        target = tile * tile_step_size
        count = int(np.ceil((size - tile) / target)) + 1
        largest = size - tile
        actual = largest / (count - 1) if count > 1 else 99999999999
        steps.append([int(np.round(actual * i)) for i in range(count)])
    return steps


def pad_to_patch(
    image: np.ndarray, patch_size: Sequence[int]
) -> tuple[np.ndarray, tuple[slice, slice, slice]]:
    """Zero-pad ``(C, X, Y, Z)`` to at least ``patch_size`` (acvl_utils ``pad_nd_image``)."""
    pads = [(0, 0)]
    revert = []
    for size, patch in zip(image.shape[1:], patch_size, strict=True):
        diff = max(int(patch) - size, 0)
        pads.append((diff // 2, diff // 2 + diff % 2))
        revert.append(slice(diff // 2, diff // 2 + size))
    if any(p != (0, 0) for p in pads):
        image = np.pad(image, pads, mode="constant", constant_values=0)
    return image, (revert[0], revert[1], revert[2])


def mirror_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial axes flipped by each test-time mirror, in nnU-Net's order (without identity)."""
    return [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


@dataclass(frozen=True)
class WindowSettings:
    """A configuration's tiling: patch, step, Gaussian, mirroring, and the engine batch."""

    patch_size: tuple[int, int, int]
    tile_step_size: float = 0.5
    gaussian: bool = True
    sigma_scale: float = 0.125
    value_scaling_factor: float = 10.0
    mirror_axes: tuple[int, ...] = ()
    batch_size: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def _tiles(shape: Sequence[int], settings: WindowSettings) -> list[Tile]:
    steps = compute_steps(shape, settings.patch_size, settings.tile_step_size)
    p = settings.patch_size
    return [
        (slice(x, x + p[0]), slice(y, y + p[1]), slice(z, z + p[2]))
        for x in steps[0]
        for y in steps[1]
        for z in steps[2]
    ]


def _predict_tiles(
    batch: np.ndarray, predict: Predictor, combos: list[tuple[int, ...]], batch_size: int
) -> np.ndarray:
    """Mirror-averaged float32 predictions of a tile batch, summed in nnU-Net's order.

    The mirrored copies go through the engine with the tiles, at most ``batch_size`` inputs (or
    the tiles of one mirroring) per call.
    """
    n = batch.shape[0]
    variants: list[tuple[int, ...]] = [(), *combos]
    per_call = max(1, batch_size // n)
    prediction: np.ndarray | None = None
    for first in range(0, len(variants), per_call):
        group = variants[first : first + per_call]
        inputs = [np.flip(batch, axis=tuple(a + 2 for a in c)) if c else batch for c in group]
        outputs = np.asarray(
            predict(np.ascontiguousarray(np.concatenate(inputs))), dtype=np.float32
        )
        for i, combo in enumerate(group):
            part = outputs[i * n : (i + 1) * n]
            part = np.flip(part, axis=tuple(a + 2 for a in combo)) if combo else part
            if prediction is None:
                prediction = np.array(part)
            else:
                prediction += part
    assert prediction is not None
    if combos:
        prediction /= np.float32(len(combos) + 1)
    return prediction


def _tile_weight(settings: WindowSettings) -> np.ndarray | np.float16:
    """What each tile's weight sum grows by (float16); with a Gaussian, its prediction's factor."""
    if not settings.gaussian:
        return np.float16(1)
    return compute_gaussian(
        settings.patch_size, settings.sigma_scale, settings.value_scaling_factor
    )


def _check_finite(logits: np.ndarray) -> None:
    """Refuse blended logits that overflowed float16 (nnU-Net's check, its error) or are NaN.

    nnU-Net checks only for infinities; a NaN would become an arbitrary label (argmax), so it
    is refused too, naming the output channel.
    """
    # Class by class: a mask of all the logits at once would be the stage's largest array.
    for k in range(logits.shape[0]):
        if np.isnan(logits[k]).any():
            raise ModelOutputError(
                f"the network gave NaN logits in output channel {k} on this study; the model "
                "(or its ONNX export) is broken: re-import or re-export it, and check its "
                "outputs on a case it was validated on"
            )
    if any(np.isinf(logits[k]).any() for k in range(logits.shape[0])):
        raise ModelOutputError(
            "infinite logits after blending (float16 overflow); the model's outputs are too large "
            "for nnU-Net's float16 accumulator"
        )


def predict_logits(
    image: np.ndarray,
    predict: Predictor,
    settings: WindowSettings,
    progress: Progress | None = None,
) -> np.ndarray:
    """One network's float16 logits ``(K, X, Y, Z)`` for a ``(C, X, Y, Z)`` image."""
    padded, revert = pad_to_patch(image.astype(np.float32, copy=False), settings.patch_size)
    shape = padded.shape[1:]
    tiles = _tiles(shape, settings)
    gaussian = _tile_weight(settings)
    combos = mirror_combinations(settings.mirror_axes)
    batch_tiles = max(1, settings.batch_size // (len(combos) + 1))
    logits: np.ndarray | None = None
    weights = np.zeros(shape, dtype=np.float16)
    for first in range(0, len(tiles), batch_tiles):
        chunk = tiles[first : first + batch_tiles]
        batch = np.stack([padded[(slice(None), *tile)] for tile in chunk])
        prediction = _predict_tiles(batch, predict, combos, settings.batch_size)
        if logits is None:
            logits = np.zeros((prediction.shape[1], *shape), dtype=np.float16)
        for tile, tile_prediction in zip(chunk, prediction, strict=True):
            if settings.gaussian:
                tile_prediction *= gaussian
            logits[(slice(None), *tile)] += tile_prediction
            weights[tile] += gaussian
        if progress is not None:
            progress(min(first + batch_tiles, len(tiles)), len(tiles))
    assert logits is not None
    np.divide(logits, weights, out=logits)
    _check_finite(logits)
    return logits[(slice(None), *revert)]


def predict_folds(
    image: np.ndarray,
    predictors: Sequence[Predictor],
    settings: WindowSettings,
    progress: Progress | None = None,
) -> np.ndarray:
    """Fold ensemble: float16 logits summed fold by fold and divided by the count (nnU-Net's)."""
    total: np.ndarray | None = None
    for predict in predictors:
        logits = predict_logits(image, predict, settings, progress)
        if total is None:
            total = np.ascontiguousarray(logits)
        else:
            total += logits
        del logits
    assert total is not None
    if len(predictors) > 1:
        total /= np.float16(len(predictors))
    return total


class _RowSums:
    """Float16 sums over rows ``start`` to ``start + capacity`` of the padded grid.

    The rows the tiles still to be added can reach; the rows before ``start`` are final and
    have been handed on. ``classes`` None: a weight sum without a class axis.
    """

    def __init__(self, classes: int | None, capacity: int, plane: tuple[int, int]) -> None:
        leading = () if classes is None else (classes,)
        self.values = np.zeros((*leading, capacity, *plane), dtype=np.float16)
        self.start = 0

    def add(self, tile: Tile, values: np.ndarray | np.float16) -> None:
        """Add ``values`` (float32 predictions, or the float16 weight) over ``tile``."""
        low, high = tile[0].start - self.start, tile[0].stop - self.start
        if low < 0 or high > self.values.shape[-3]:
            raise RuntimeError(  # a bookkeeping error, not an input one
                f"tile rows {tile[0].start}…{tile[0].stop} outside the window "
                f"{self.start}…{self.start + self.values.shape[-3]}"
            )
        self.values[..., low:high, tile[1], tile[2]] += values

    def pop(self, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` as a new array; the window then starts at ``stop``."""
        count = stop - self.start
        final = self.values[..., :count, :, :].copy()
        kept = self.values.shape[-3] - count
        # Move the open rows to the front (numpy buffers overlapping copies), zero the rest.
        self.values[..., :kept, :, :] = self.values[..., count:, :, :]
        self.values[..., kept:, :, :] = 0
        self.start = stop
        return final


def _final_rows(
    sums: Sequence[_RowSums], weights: _RowSums, stop: int, revert: Tile
) -> Iterator[LogitRows]:
    """Padded rows ``weights.start`` to ``stop`` finished as :func:`predict_folds` finishes them.

    Per fold: divided by the weight sum and checked for overflow (padding rows included, as
    :func:`predict_logits` checks them); then cropped to the image, summed over the folds in
    fold order and divided by their count. Yields nothing for rows of padding only.
    """
    low = weights.start
    weight = weights.pop(stop)
    rows = range(max(low, revert[0].start), min(stop, revert[0].stop))
    total: np.ndarray | None = None
    for fold in sums:
        logits = fold.pop(stop)
        np.divide(logits, weight, out=logits)
        _check_finite(logits)
        if not rows:
            continue
        cropped = logits[:, rows.start - low : rows.stop - low, revert[1], revert[2]]
        if total is None:
            total = np.ascontiguousarray(cropped)
        else:
            total += cropped
    if total is None:
        return
    if len(sums) > 1:
        total /= np.float16(len(sums))
    yield rows.start - revert[0].start, total


def stream_folds(
    image: np.ndarray,
    predictors: Sequence[Predictor],
    settings: WindowSettings,
    progress: Progress | None = None,
) -> Iterator[LogitRows]:
    """:func:`predict_folds`'s logits, the rows of the image's grid as soon as they are final.

    Yields ``(first row, float16 logits (K, rows, Y, Z))``, every row once, in order, equal to
    :func:`predict_folds`'s bit for bit. Tiles go with their axis-0 start outermost, so once the
    next batch of tiles starts at row ``s``, rows below ``s`` get nothing more. Each batch goes
    through every fold in turn, and each fold sums into its own window of the rows later tiles
    can still reach (a patch plus the row span of a batch), adding every voxel's tiles in the
    same order as :func:`predict_logits`; the rows leaving the window are finished by
    :func:`_final_rows`. Memory: folds × classes × that window, not × the image.
    """
    padded, revert = pad_to_patch(image.astype(np.float32, copy=False), settings.patch_size)
    shape = padded.shape[1:]
    plane = (shape[1], shape[2])
    tiles = _tiles(shape, settings)
    gaussian = _tile_weight(settings)
    combos = mirror_combinations(settings.mirror_axes)
    per_batch = max(1, settings.batch_size // (len(combos) + 1))
    batches = [tiles[i : i + per_batch] for i in range(0, len(tiles), per_batch)]
    capacity = max(batch[-1][0].stop - batch[0][0].start for batch in batches)
    weights = _RowSums(None, capacity, plane)
    sums: list[_RowSums] = []
    for number, batch in enumerate(batches):
        inputs = np.stack([padded[(slice(None), *tile)] for tile in batch])
        for fold, predict in enumerate(predictors):
            prediction = _predict_tiles(inputs, predict, combos, settings.batch_size)
            if not sums:
                sums = [_RowSums(prediction.shape[1], capacity, plane) for _ in predictors]
            for tile, tile_prediction in zip(batch, prediction, strict=True):
                if settings.gaussian:
                    tile_prediction *= gaussian
                sums[fold].add(tile, tile_prediction)
        for tile in batch:
            weights.add(tile, gaussian)
        final = batches[number + 1][0][0].start if number + 1 < len(batches) else shape[0]
        if final > weights.start:
            yield from _final_rows(sums, weights, final, revert)
        if progress is not None:
            progress(min((number + 1) * per_batch, len(tiles)), len(tiles))
