"""Segment one volume with one bundle: prepare → sliding window → map back → clean up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from service.dicom.volume import Volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.manifest import Activation
from service.inference.postprocess import clean_labels, to_source_labels
from service.inference.preprocess import prepare
from service.inference.session import OnnxModel, SessionOptions
from service.inference.sliding_window import (
    Progress,
    SlidingWindowConfig,
    mirrored,
    sliding_window,
)
from service.labels.registry import LabelTable


@dataclass
class Segmentation:
    """A label map on the source volume's grid, with what produced it."""

    labels: np.ndarray  # uint8 on the source grid, values from `table`
    table: LabelTable
    values: np.ndarray  # the physical values the model saw (HU, SUV, MR units)
    provider: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def present(self) -> list[str]:
        """Names of the labels that have at least one voxel."""
        # One comparison per label: np.unique would sort the whole volume.
        return [e.name for e in self.table.labels if np.any(self.labels == e.number)]


class Segmenter:
    """A bundle loaded into an onnxruntime session, ready to segment volumes."""

    def __init__(
        self,
        bundle: ModelBundle,
        options: SessionOptions | None = None,
        batch_size: int = 2,
        mirror_tta: bool = False,
    ) -> None:
        manifest = bundle.manifest
        if manifest.activation is not Activation.SOFTMAX:
            raise ModelBundleError(
                f"{bundle.path}: activation {manifest.activation.value} is not supported by this "
                "engine; export the model with softmax (one channel per label plus background)"
            )
        self.bundle = bundle
        self.model = OnnxModel(bundle.model_path, options)
        self.window = SlidingWindowConfig(
            patch_size=manifest.patch_size, overlap=manifest.overlap, batch_size=batch_size
        )
        self.mirror_tta = mirror_tta

    @property
    def provider(self) -> str:
        """The execution provider the session actually runs on."""
        return self.model.provider

    def segment(
        self, volume: Volume, progress: Progress | None = None, values: np.ndarray | None = None
    ) -> Segmentation:
        """Segment ``volume``; timings are recorded per stage in seconds.

        ``values`` are the volume's model values (:func:`model_values`) when the caller has
        them already, so PET is converted to SUV once.
        """
        manifest = self.bundle.manifest
        timings: dict[str, float] = {}
        start = time.perf_counter()
        prepared = prepare(volume, manifest, values)
        timings["preprocess"] = time.perf_counter() - start
        predict = mirrored(self.model.predict) if self.mirror_tta else self.model.predict
        start = time.perf_counter()
        logits = sliding_window(prepared.image, predict, self.window, progress)
        timings["infer"] = time.perf_counter() - start
        start = time.perf_counter()
        labels = to_source_labels(logits, prepared.grid)
        del logits
        labels = clean_labels(labels, volume.affine, manifest)
        timings["postprocess"] = time.perf_counter() - start
        return Segmentation(
            labels=labels,
            table=manifest.label_table(),
            values=prepared.values,
            provider=self.provider,
            timings=timings,
        )
