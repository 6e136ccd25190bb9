"""From nnU-Net logits on the network grid to labels on the input grid (``export_prediction.py``).

nnU-Net 2.8.1's ``convert_predicted_logits_to_segmentation_with_correct_shape``: resample the
float16 logits to the cropped input shape (order 1, separate-z rule with the configuration's
spacing as the current one), argmax (softmax models) or ``regions_class_order`` over
``sigmoid > 0.5`` (region models), insert into the uncropped shape, transpose back; then
``postprocessing.json``'s rules (``remove_connected_components.py``).

Memory: nnU-Net resamples every class onto the input grid at once (classes × voxels, float16,
plus float64 temporaries). Here the source grid is labelled a chunk of rows at a time, each
chunk class by class (:func:`~service.inference.nnunet.resampling.resample_channel_chunks`): a
running float16 maximum and the label chunk are all that is kept, which gives the same labels
(first maximum wins, as ``argmax``); chunks are written into the uncropped label map directly.
:func:`logits_to_labels` reads logits held whole on the network grid; :func:`stream_labels`
the same chunks from network rows as they arrive
(:class:`~service.inference.nnunet.resampling.RowResampling`), keeping only the rows a chunk
still needs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from service.inference.nnunet.preprocessing import CaseGeometry
from service.inference.nnunet.recipe import NnunetModel, PostprocessingStep
from service.inference.nnunet.resampling import (
    RowResampling,
    RowWindow,
    resample_channel_chunks,
    row_streaming_obstacle,
    separate_z_axis,
)
from service.inference.nnunet.sliding_window import LogitRows


def _sigmoid(values: np.ndarray) -> np.ndarray:
    x = values.astype(np.float32)
    out: np.ndarray = np.float32(1) / (np.float32(1) + np.exp(-x))
    return out


def logits_axis(geometry: CaseGeometry, model: NnunetModel) -> int | None:
    """The axis the logits are resampled separately along (nnU-Net's rule), or None."""
    rule = model.resampling_logits
    return separate_z_axis(
        rule.force_separate_z, model.spacing, geometry.spacing, rule.separate_z_anisotropy_threshold
    )


def _label_volume(geometry: CaseGeometry, model: NnunetModel) -> tuple[np.ndarray, np.ndarray]:
    """The uncropped label map (zeros, uint8 or uint16) and its crop box's view."""
    largest = max(model.regions_class_order or model.output_values)
    dtype = np.uint8 if largest < 255 else np.uint16
    full = np.zeros(geometry.shape_before_cropping, dtype=dtype)
    return full, full[tuple(slice(a, b) for a, b in geometry.bbox)]


def _chunk_labels(classes: Iterator[np.ndarray], model: NnunetModel, dtype: np.dtype) -> np.ndarray:
    """Labels of one chunk from its classes' float16 values, taken one class at a time.

    Softmax: a running maximum, the first maximum winning as ``argmax``; regions:
    ``regions_class_order`` over ``sigmoid > 0.5``, later regions overwriting earlier ones.
    The first class's array is changed in place.
    """
    first = next(classes)
    out = np.zeros(first.shape, dtype=dtype)
    if model.regions_class_order is not None:
        regions = itertools.chain([first], classes)
        for values, value in zip(regions, model.regions_class_order, strict=True):
            out[_sigmoid(values) > 0.5] = value
        return out
    best = first
    for k, current in enumerate(classes, start=1):
        better = current > best
        out[better] = k
        np.maximum(best, current, out=best)
    return out


def logits_to_labels(logits: np.ndarray, geometry: CaseGeometry, model: NnunetModel) -> np.ndarray:
    """``(K, *network grid)`` float16 logits → nnU-Net labels on the input array's grid.

    The result is in the input's own axis order (transpose_backward applied), uint8 or uint16.
    """
    rule = model.resampling_logits
    axis = logits_axis(geometry, model)
    full, cropped = _label_volume(geometry, model)
    streams = [
        resample_channel_chunks(
            logits[k],
            geometry.shape_after_cropping,
            axis,
            rule.order,
            rule.order_z,
            dtype=np.float16,  # nnU-Net's float16 logits on the input grid, one chunk each
        )
        for k in range(logits.shape[0])
    ]
    for index, first in streams[0]:
        others = (values for _, values in map(next, streams[1:]))  # one class at a time
        cropped[index] = _chunk_labels(itertools.chain([first], others), model, full.dtype)
    return full.transpose(model.transpose_backward)


def streaming_obstacle(geometry: CaseGeometry, model: NnunetModel) -> str | None:
    """Why :func:`stream_labels` cannot export this case (None: it can)."""
    return row_streaming_obstacle(
        geometry.shape_resampled,
        geometry.shape_after_cropping,
        logits_axis(geometry, model),
        model.resampling_logits.order,
    )


class _RowBuffer:
    """The network-grid rows a streamed export still needs, pulled from the producer on demand."""

    def __init__(self, rows: Iterable[LogitRows]) -> None:
        self._rows = iter(rows)
        self.arrived = 0  # rows received so far
        self.start = 0  # the first row held
        self.values: np.ndarray | None = None  # (K, rows, Y, Z): rows start to arrived

    def hold(self, low: int, high: int) -> np.ndarray:
        """Rows ``low`` to ``high`` ``(K, rows, Y, Z)``; rows before ``low`` are let go for good."""
        self._let_go(low)
        while self.arrived < high:
            first, rows = next(self._rows, (-1, None))
            if rows is None or first != self.arrived:
                raise RuntimeError(f"logit rows from {first} arrived, {self.arrived} expected")
            if self.values is None or self.values.shape[1] == 0:
                self.values, self.start = rows, first
            else:
                self.values = np.concatenate([self.values, rows], axis=1)
            self.arrived += rows.shape[1]
            self._let_go(low)
        assert self.values is not None and self.start == low
        return self.values

    def _let_go(self, low: int) -> None:
        if self.values is not None and low > self.start:
            cut = min(low, self.arrived) - self.start
            self.values, self.start = self.values[:, cut:], self.start + cut

    def drain(self) -> None:
        """Pull the rows no chunk reads, so that the producer finishes (and checks) them."""
        for _ in self._rows:
            pass


def stream_labels(
    rows: Iterable[LogitRows], geometry: CaseGeometry, model: NnunetModel
) -> np.ndarray:
    """:func:`logits_to_labels` of logits that arrive as rows of the network grid, in order.

    The same chunks of source rows with the same numbers (:class:`RowResampling`), each computed
    once the network rows it reads have arrived; rows no later chunk reads are dropped, so the
    logits held are one chunk's rows plus one arrival. Raises ValueError where
    :func:`streaming_obstacle` objects.
    """
    rule = model.resampling_logits
    resampling = RowResampling(
        geometry.shape_resampled,
        geometry.shape_after_cropping,
        logits_axis(geometry, model),
        rule.order,
        rule.order_z,
    )
    full, cropped = _label_volume(geometry, model)
    buffer = _RowBuffer(rows)
    for (start, stop), (low, high) in resampling.chunks():
        held = buffer.hold(low, high)
        classes = (
            resampling.values(RowWindow(held[k], low, geometry.shape_resampled), (start, stop))
            for k in range(held.shape[0])
        )
        cropped[start:stop] = _chunk_labels(classes, model, full.dtype)
    buffer.drain()
    return full.transpose(model.transpose_backward)


def _mask(labels: np.ndarray, target: int | tuple[int, ...]) -> np.ndarray:
    """nnU-Net's ``region_or_label_to_mask``."""
    if isinstance(target, tuple):
        return np.isin(labels, np.asarray(target))
    return labels == target


def keep_largest_component(
    labels: np.ndarray, targets: Sequence[int | tuple[int, ...]]
) -> np.ndarray:
    """``remove_all_but_largest_component_from_segmentation`` (in place; returns ``labels``).

    Components are 26-connected (scikit-image's default full connectivity); every component of
    the largest size is kept, as nnU-Net keeps ties. The work is done inside the masks'
    bounding box.
    """
    mask = np.zeros(labels.shape, dtype=bool)
    for target in targets:
        mask |= _mask(labels, target)
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    if not boxes or boxes[0] is None:
        return labels
    box = boxes[0]
    region = mask[box]
    components, count = ndimage.label(region, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return labels
    sizes = np.bincount(components.ravel())[1:]
    keep = np.zeros(count + 1, dtype=bool)
    keep[1:] = sizes == sizes.max()
    drop = region & ~keep[components]
    labels[box][drop] = 0
    return labels


def apply_postprocessing(labels: np.ndarray, steps: Sequence[PostprocessingStep]) -> np.ndarray:
    """``postprocessing.json``'s rules in order (nnU-Net's ``apply_postprocessing``), in place."""
    for step in steps:
        keep_largest_component(labels, step.labels_or_regions)
    return labels
