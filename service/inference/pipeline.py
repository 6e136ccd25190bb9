"""Segment one volume with one bundle: prepare → sliding window → map back → clean up.

:class:`Segmenter` runs fedseg's own U-Net recipe; :func:`open_segmenter` returns the segmenter
a bundle's ``runtime`` asks for (this one, or nnU-Net's), behind one interface.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from service.dicom.volume import Volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.manifest import Activation, Runtime
from service.inference.nnunet.segmenter import NnunetSegmenter
from service.inference.postprocess import clean_labels, to_source_labels
from service.inference.preprocess import prepare
from service.inference.segmenter import ModelSegmenter, Segmentation, run_on_zero_patch
from service.inference.session import Mirroring, SessionOptions, open_model
from service.inference.sliding_window import (
    Progress,
    SlidingWindowConfig,
    mirrored,
    sliding_window,
)

__all__ = ["ModelSegmenter", "Segmentation", "Segmenter", "open_segmenter"]


def open_segmenter(
    bundle: ModelBundle,
    options: SessionOptions | None = None,
    batch_size: int = 2,
    mirroring: Mirroring = Mirroring.MODEL,
) -> ModelSegmenter:
    """The segmenter for ``bundle``'s runtime, its network(s) loaded in the chosen engine.

    ``mirroring`` is resolved here, per runtime (:class:`Mirroring`): an nnU-Net model mirrors
    unless it is ``off``, fedseg's own U-Net only when it is ``on``.
    """
    mirroring = Mirroring(mirroring)
    if bundle.manifest.runtime is Runtime.NNUNET_V2:
        return NnunetSegmenter(
            bundle, options, batch_size=batch_size, mirror_tta=mirroring is not Mirroring.OFF
        )
    return Segmenter(bundle, options, batch_size=batch_size, mirror_tta=mirroring is Mirroring.ON)


class Segmenter(ModelSegmenter):
    """A fedseg-recipe bundle loaded into its engine, ready to segment volumes."""

    def __init__(
        self,
        bundle: ModelBundle,
        options: SessionOptions | None = None,
        batch_size: int = 2,
        mirror_tta: bool = False,
    ) -> None:
        manifest = bundle.manifest
        if manifest.runtime is not Runtime.FEDSEG:
            raise ModelBundleError(
                f"{bundle.path}: a {manifest.runtime.value} bundle; load it with open_segmenter"
            )
        _, _, patch_size = manifest.fedseg_recipe
        if manifest.activation is not Activation.SOFTMAX:
            raise ModelBundleError(
                f"{bundle.path}: activation {manifest.activation.value} is not supported by this "
                "engine; export the model with softmax (one channel per label plus background)"
            )
        self.bundle = bundle
        self.model = open_model(bundle.model_path, options)
        self.window = SlidingWindowConfig(
            patch_size=patch_size, overlap=manifest.overlap, batch_size=batch_size
        )
        self.mirror_tta = mirror_tta

    @property
    def provider(self) -> str:
        """The execution provider the session actually runs on."""
        return self.model.provider

    @property
    def mirroring(self) -> bool:
        """Whether predictions are averaged over mirrored inputs (all three axes)."""
        return self.mirror_tta

    def use_fast_tiling(self) -> None:
        """Window overlap 0.25 instead of the manifest's, for a quick look."""
        self.window = replace(self.window, overlap=0.25)

    def smoke_test(self) -> None:
        """Run the network once on a zero patch.

        Raises
        ------
        ModelBundleError
            If it fails, or returns the wrong shape or non-finite values.
        """
        manifest = self.bundle.manifest
        patch = np.zeros((1, manifest.input_channels, *self.window.patch_size), dtype=np.float32)
        expected = (1, manifest.num_classes, *self.window.patch_size)
        run_on_zero_patch(self.model.predict, patch, expected, f"{len(manifest.labels)} labels")

    def segment(
        self,
        volume: Volume,
        progress: Progress | None = None,
        values: np.ndarray | None = None,
        secondary: Sequence[np.ndarray] = (),
    ) -> Segmentation:
        """Segment ``volume``; timings are recorded per stage in seconds.

        ``values`` are the volume's model values (:func:`model_values`) when the caller has
        them already, so PET is converted to SUV once.
        """
        manifest = self.bundle.manifest
        if secondary:
            raise ModelBundleError(
                f"{self.bundle.path}: fedseg's own U-Net recipe takes one series, not "
                f"{1 + len(secondary)}"
            )
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
