"""The nnU-Net path streamed along network axis 0, against the whole-volume computation.

``stream_folds`` must give ``predict_folds``'s float16 logits bit for bit, and ``stream_labels``
``logits_to_labels``'s labels exactly, on shapes that exercise the bookkeeping: tiles batched
across tile rows, several folds, mirroring, images smaller than the patch, odd tile counts,
separate-z and 3D resampling up and down, transposed models, regions, many classes; a window
missing a row a chunk reads is refused rather than read as an edge.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from service.inference.bundle import ModelBundle
from service.inference.nnunet.export import (
    apply_postprocessing,
    logits_to_labels,
    stream_labels,
    streaming_obstacle,
)
from service.inference.nnunet.preprocessing import CaseGeometry, preprocess
from service.inference.nnunet.recipe import NnunetModel, NnunetRecipe
from service.inference.nnunet.resampling import (
    RowResampling,
    RowWindow,
    compute_new_shape,
    resample_channel_chunks,
)
from service.inference.nnunet.segmenter import ModelRunner, nnunet_spacing
from service.inference.nnunet.sliding_window import (
    Predictor,
    WindowSettings,
    predict_folds,
    stream_folds,
)
from service.inference.session import Device, SessionOptions

from .conftest import PLACEHOLDER_FOLD, TinyModel, ct_volume, recipe_block


def _network(classes: int, seed: int, calls: list[int] | None = None) -> Predictor:
    """A stand-in network: per class, a squashed gain of the input plus a pattern over the patch.

    The pattern makes overlapping tiles and mirrored copies disagree, so a tile added to the
    wrong rows, twice or not at all changes the blend.
    """
    gain = np.random.default_rng(seed).normal(size=classes).astype(np.float32)

    def predict(batch: np.ndarray) -> np.ndarray:
        if calls is not None:
            calls.append(batch.shape[0])
        i, j, k = np.indices(batch.shape[2:], dtype=np.float32)
        out = np.empty((batch.shape[0], classes, *batch.shape[2:]), dtype=np.float32)
        for c in range(classes):
            pattern = np.sin(0.9 * i + 0.4 * j - 0.6 * k + c)
            out[:, c] = 4 * np.tanh(gain[c] * batch[:, 0]) + pattern
        return out

    return predict


def _joined(rows: Iterator[tuple[int, np.ndarray]]) -> tuple[np.ndarray, list[int]]:
    """The rows put together, checked to come in order, each once; and where each began."""
    firsts, parts, expected = [], [], 0
    for first, part in rows:
        assert first == expected, f"rows from {first}, {expected} expected"
        assert part.dtype == np.float16 and part.shape[1] > 0
        firsts.append(first)
        parts.append(part)
        expected += part.shape[1]
    return np.concatenate(parts, axis=1), firsts


# (image shape, patch, step, mirror axes, folds, batch size, classes, Gaussian)
WINDOW_CASES = {
    "batches-span-tile-rows": ((37, 20, 22), (8, 8, 8), 0.5, (), 1, 2, 3, True),
    "two-folds-mirroring": ((21, 12, 14), (8, 8, 8), 0.5, (0, 1, 2), 2, 4, 3, True),
    "smaller-than-the-patch": ((5, 20, 9), (8, 8, 12), 0.5, (0,), 2, 3, 4, True),
    "odd-steps-many-classes": ((50, 9, 10), (7, 9, 9), 0.3, (), 3, 5, 30, True),
    "no-overlap-no-gaussian": ((23, 11, 13), (6, 5, 7), 1.0, (1,), 1, 1, 2, False),
    "batches-of-seven-tile-rows": ((45, 12, 12), (8, 12, 12), 0.5, (), 2, 7, 2, True),
    "exactly-the-patch": ((8, 8, 8), (8, 8, 8), 0.5, (2,), 2, 2, 3, True),
}


@pytest.mark.parametrize("case", WINDOW_CASES.values(), ids=WINDOW_CASES.keys())
def test_streamed_logits_equal_the_whole_blend(case: tuple[Any, ...]) -> None:
    shape, patch, step, mirror, folds, batch, classes, gaussian = case
    image = np.random.default_rng(1).normal(size=(1, *shape)).astype(np.float32)
    settings = WindowSettings(
        patch_size=patch,
        tile_step_size=step,
        gaussian=gaussian,
        mirror_axes=mirror,
        batch_size=batch,
    )
    networks = [_network(classes, seed) for seed in range(folds)]
    expected = predict_folds(image, networks, settings)
    streamed, firsts = _joined(stream_folds(image, networks, settings))
    assert streamed.shape == expected.shape == (classes, *shape)
    # Bit for bit (as integers, so that even a NaN would have to match).
    np.testing.assert_array_equal(streamed.view(np.uint16), expected.view(np.uint16))
    if shape[0] >= 2 * patch[0]:
        assert len(firsts) > 1, "the rows came in one piece: nothing was streamed"


def test_rows_leave_before_the_last_tile() -> None:
    """Rows are handed on while tiles further down are still to be predicted; progress rises."""
    calls: list[int] = []
    image = np.random.default_rng(2).normal(size=(1, 40, 8, 8)).astype(np.float32)
    settings = WindowSettings(patch_size=(8, 8, 8), batch_size=1)
    reported: list[tuple[int, int]] = []
    rows = stream_folds(
        image, [_network(2, 0, calls)], settings, lambda d, t: reported.append((d, t))
    )
    first, part = next(rows)
    assert (first, part.shape[1]) == (0, 4)  # the next tile starts at row 4 (step 0.5 of 8)
    assert len(calls) == 1  # one tile of 9 predicted
    list(rows)
    assert len(calls) == 9
    assert [d for d, _ in reported] == list(range(1, 10))
    assert {t for _, t in reported} == {9}


def test_streamed_blend_holds_a_window_not_the_volume() -> None:
    """40 classes over 160 rows: the traced peak is far below one fold's whole logits."""
    classes, shape = 40, (160, 24, 24)
    image = np.random.default_rng(3).normal(size=(1, *shape)).astype(np.float32)
    settings = WindowSettings(patch_size=(8, 8, 8), batch_size=2)
    network = _network(classes, 0)
    whole_logits = classes * int(np.prod(shape)) * 2
    tracemalloc.start()
    try:
        rows = sum(part.shape[1] for _, part in stream_folds(image, [network], settings))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == shape[0]
    assert peak < whole_logits / 4, (peak, whole_logits)


def test_overflow_is_found_in_a_streamed_row() -> None:
    def predict(batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 2, *batch.shape[2:]), dtype=np.float32)
        out[:, 1] = np.where(batch[:, 0] > 0, 60000.0, 0.0)  # × the Gaussian's 10: inf
        return out

    image = np.zeros((1, 32, 8, 8), dtype=np.float32)
    image[0, 30] = 1.0  # only in the last tile row
    rows = stream_folds(image, [predict], WindowSettings(patch_size=(8, 8, 8)))
    with pytest.raises(FloatingPointError, match="float16 overflow"):
        list(rows)


# --- export --------------------------------------------------------------------------------


def _model(**overrides: Any) -> NnunetModel:
    return NnunetRecipe.from_dict(recipe_block([PLACEHOLDER_FOLD], **overrides)).models[0]


def _transposed(forward: list[int]) -> dict[str, Any]:
    return {
        "transpose_forward": forward,
        "transpose_backward": [forward.index(a) for a in range(3)],
    }


def _classes(count: int) -> dict[str, Any]:
    """Model overrides for ``count`` softmax classes."""
    labels = {"background": 0, **{f"structure_{k}": k for k in range(1, count)}}
    return {"labels": labels, "label_map": {"1": 1}, "postprocessing": []}


REGIONS = {"background": 0, "whole": [1, 2], "core": 2}
# (input spacing in network order, model overrides, classes)
EXPORT_CASES = {
    "separate-z-down": ((4.0, 1.2, 1.2), {}, 4),
    "separate-z-up": ((4.0, 1.2, 1.2), {"spacing": [6.0, 1.5, 1.5]}, 4),
    "separate-z-same-rows": ((6.0, 1.2, 1.2), {"spacing": [6.0, 1.5, 1.5]}, 4),
    "separate-z-thick-model": ((6.0, 1.0, 1.0), {"spacing": [1.5, 1.5, 1.5]}, 4),
    "3d-up": ((2.0, 1.3, 1.4), {}, 4),
    "3d-down": ((2.4, 2.4, 2.4), {"spacing": [1.5, 1.5, 1.5]}, 4),
    "3d-down-by-more-than-3": ((5.0, 5.0, 5.0), {"spacing": [1.5, 1.5, 1.5]}, 3),
    "unchanged-grid": ((1.5, 1.5, 1.5), {"spacing": [1.5, 1.5, 1.5]}, 4),
    "transposed-2-0-1": (
        (1.0, 1.1, 1.2),
        {"spacing": [1.5, 1.5, 1.5], **_transposed([2, 0, 1])},
        4,
    ),
    "30-classes": ((1.0, 1.0, 1.0), {"spacing": [1.5, 1.5, 1.5], **_classes(30)}, 30),
    "regions": (
        (4.0, 1.2, 1.2),
        {
            "labels": REGIONS,
            "regions_class_order": [1, 2],
            "label_map": {"1": 1, "2": 2},
            "postprocessing": [],
        },
        2,
    ),
}


def _export_case(
    spacing: tuple[float, float, float],
    model: NnunetModel,
    classes: int,
    cropped: tuple[int, int, int] = (36, 24, 52),
) -> tuple[np.ndarray, CaseGeometry]:
    """Random float16 logits on the network grid of a case cropped by a margin of 2 or 3."""
    before = (cropped[0] + 4, cropped[1] + 6, cropped[2] + 4)
    bbox = ((2, 2 + cropped[0]), (3, 3 + cropped[1]), (2, 2 + cropped[2]))
    resampled = compute_new_shape(cropped, spacing, model.spacing)
    logits = np.random.default_rng(5).normal(size=(classes, *resampled)).astype(np.float16)
    return logits, CaseGeometry(spacing, before, bbox, cropped, resampled)


def _arriving(logits: np.ndarray, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    for first in range(0, logits.shape[1], rows):
        yield first, logits[:, first : first + rows].copy()


@pytest.mark.parametrize("case", EXPORT_CASES.values(), ids=EXPORT_CASES.keys())
@pytest.mark.parametrize("arrival", [1, 5, 10_000], ids=["by-1", "by-5", "whole"])
def test_streamed_labels_equal_the_whole_export(case: tuple[Any, ...], arrival: int) -> None:
    spacing, overrides, classes = case
    model = _model(**overrides)
    logits, geometry = _export_case(spacing, model, classes)
    assert streaming_obstacle(geometry, model) is None
    expected = logits_to_labels(logits, geometry, model)
    labels = stream_labels(_arriving(logits, arrival), geometry, model)
    assert labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) >= min(classes, 3)


def test_labels_of_many_classes_are_uint16() -> None:
    model = _model(**_classes(300))
    logits, geometry = _export_case((4.0, 1.2, 1.2), model, 300, cropped=(36, 4, 7))
    expected = logits_to_labels(logits, geometry, model)
    labels = stream_labels(_arriving(logits, 3), geometry, model)
    assert labels.dtype == expected.dtype == np.uint16
    np.testing.assert_array_equal(labels, expected)
    assert labels.max() > 255


@pytest.mark.parametrize(
    ("spacing", "overrides", "reason"),
    [
        ((1.2, 1.2, 4.0), {"spacing": [1.5, 1.5, 1.5]}, "separate axis is 2"),
        (
            (2.0, 1.3, 1.4),
            {"resampling_logits": {"order": 3, "order_z": 0, "force_separate_z": None}},
            "order 3",
        ),
    ],
    ids=["separate-axis-2", "3d-order-3"],
)
def test_what_does_not_stream_is_refused(
    spacing: tuple[float, float, float], overrides: dict[str, Any], reason: str
) -> None:
    """The segmenter keeps these whole (see ModelRunner.predict); stream_labels refuses them."""
    model = _model(**overrides)
    logits, geometry = _export_case(spacing, model, 3)
    obstacle = streaming_obstacle(geometry, model)
    assert obstacle is not None and reason in obstacle
    with pytest.raises(ValueError, match=reason):
        stream_labels(_arriving(logits, 4), geometry, model)


@pytest.mark.parametrize(
    ("shape", "new_shape", "axis"),
    [((24, 7, 9), (36, 8, 8), None), ((120, 7, 9), (36, 8, 8), None), ((48, 7, 9), (36, 8, 8), 0)],
    ids=["3d-up", "3d-down", "separate-z"],
)
def test_a_chunk_needs_exactly_the_rows_it_names(
    shape: tuple[int, int, int], new_shape: tuple[int, int, int], axis: int | None
) -> None:
    """A window of a chunk's rows gives the whole array's values; one row short is refused."""
    channel = np.random.default_rng(6).normal(size=shape).astype(np.float16)
    resampling = RowResampling(shape, new_shape, axis, 1)
    whole = list(resample_channel_chunks(channel, new_shape, axis, 1, dtype=np.float16))
    chunks = resampling.chunks()
    assert [rows for rows, _ in chunks] == [(i[0].start, i[0].stop) for i, _ in whole]
    for ((start, stop), (low, high)), (_, expected) in zip(chunks, whole, strict=True):
        values = resampling.values(RowWindow(channel[low:high], low, shape), (start, stop))
        np.testing.assert_array_equal(values.view(np.uint16), expected.view(np.uint16))
        short = [RowWindow(channel[low + 1 : high], low + 1, shape)]
        if high - 1 > low:
            short.append(RowWindow(channel[low : high - 1], low, shape))
        for window in short:
            with pytest.raises(ValueError, match="are needed"):
                resampling.values(window, (start, stop))


# --- the whole runner on the tiny nnU-Net model ---------------------------------------------

# (volume spacing, slices kept, mirroring, whether the export streams)
RUNNER_CASES = {
    # ct_volume: 4 mm slices, separate z along network axis 0; 19 rows, two tile rows.
    "separate-z-mirroring": ((1.2, 1.2, 4.0), None, True, True),
    # 2 × 2 × 4 mm: anisotropy 2, a 3D order-1 export; 19 rows.
    "3d-no-mirroring": ((2.0, 2.0, 4.0), None, False, True),
    # 8 slices: 11 rows on the network grid, fewer than the patch's 16: padded along axis 0.
    "thinner-than-the-patch": ((1.2, 1.2, 4.0), 8, False, True),
    # 4 mm along i: separate z along network axis 1, which the runner keeps whole.
    "separate-axis-1-kept-whole": ((4.0, 1.2, 1.2), None, False, False),
}


@pytest.mark.parametrize("case", RUNNER_CASES.values(), ids=RUNNER_CASES.keys())
def test_runner_labels_equal_the_whole_computation(
    tiny_model: TinyModel, case: tuple[Any, ...]
) -> None:
    """Two folds of the real (ONNX) network: the streamed runner's labels are the whole path's."""
    spacing, slices, mirror, streams = case
    volume = ct_volume()
    volume = replace(volume, array=volume.array[:, :, :slices], affine=np.diag([*spacing, 1.0]))
    bundle = ModelBundle.load(tiny_model.bundle)
    assert bundle.manifest.nnunet is not None
    model = bundle.manifest.nnunet.models[0]
    runner = ModelRunner.load(
        model, bundle.fold_paths()[0], SessionOptions(device=Device.CPU), mirror_tta=mirror
    )
    assert len(runner.folds) == 2
    data = volume.array.transpose(2, 1, 0)[None]
    nn_spacing = nnunet_spacing(volume.affine)
    labels = runner.predict(data, nn_spacing)

    image, geometry = preprocess(data, nn_spacing, model)
    obstacle = streaming_obstacle(geometry, model)
    assert (obstacle is None) == streams, obstacle
    logits = predict_folds(image, [f.predict for f in runner.folds], runner.settings)
    whole = logits_to_labels(logits, geometry, model)
    expected = apply_postprocessing(np.ascontiguousarray(whole), model.postprocessing)
    np.testing.assert_array_equal(labels, expected)
    assert len(np.unique(labels)) >= 3, "the network segments too little to compare"
    assert set(runner.timings) == {"preprocess", "infer", "postprocess"}
