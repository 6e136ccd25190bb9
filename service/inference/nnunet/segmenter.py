"""Run an nnU-Net v2 bundle as ``nnUNetPredictor`` does, without torch.

Per model of the bundle: preprocess (transpose, crop, normalise, resample;
:mod:`~service.inference.nnunet.preprocessing`) → sliding window with Gaussian weighting and
mirror TTA, each fold in turn, logits averaged (:mod:`~service.inference.nnunet.sliding_window`)
→ logits resampled back, argmax or regions, uncropped, transposed back
(:mod:`~service.inference.nnunet.export`) → ``postprocessing.json`` → ``label_map`` into the
bundle's label numbers, later models overwriting earlier ones where they found something.

Array convention (the recipe's): nnU-Net sees the array SimpleITK returns for the NIfTI file
:mod:`service.nifti` writes for the volume, i.e. ``volume.array`` with its axes reversed, and
the spacing reversed to that order, rounded to float32 as NIfTI stores it.

Memory on a large CT (512×512×900, float32 input 0.94 GB), besides the caller's volume:
preprocessing views it (no normalised copy for CT; the resampling reads slabs of a few dozen
slices), then the resampled network input and one label map on the source grid. The logits
stream along network axis 0 (:func:`~service.inference.nnunet.sliding_window.stream_folds` →
:func:`~service.inference.nnunet.export.stream_labels`): each fold keeps float16 sums of the
rows its next tiles reach (classes × about a patch and a half of rows × the plane), and rows
no tile reaches any more are mapped back and labelled a chunk of source slices at a time, one
class at a time; so memory no longer grows with classes × volume. Where the export cannot go
by rows (:func:`~service.inference.nnunet.export.streaming_obstacle`: a separate-z axis other
than 0, a 3D logits resize of order above 1) the logits are kept whole on the network grid,
as before (classes × voxels × 2 bytes). Both give the same labels, bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from service.dicom.volume import Volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
from service.inference.nnunet.export import (
    apply_postprocessing,
    logits_to_labels,
    stream_labels,
    streaming_obstacle,
)
from service.inference.nnunet.preprocessing import preprocess
from service.inference.nnunet.recipe import NnunetModel
from service.inference.nnunet.resampling import Spacing3
from service.inference.nnunet.sliding_window import (
    LogitRows,
    WindowSettings,
    predict_folds,
    stream_folds,
)
from service.inference.segmenter import ModelSegmenter, Segmentation, run_on_zero_patch
from service.inference.session import InferenceModel, SessionOptions, open_model

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def nnunet_spacing(affine: np.ndarray) -> Spacing3:
    """A volume's spacing in nnU-Net's (SimpleITK) axis order, as NIfTI's float32 stores it."""
    columns = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    k, j, i = (float(np.float32(v)) for v in columns[::-1])
    return (k, j, i)


@dataclass
class ModelRunner:
    """One nnU-Net model of a bundle: its folds loaded, ready to predict labels."""

    model: NnunetModel
    folds: list[InferenceModel]
    settings: WindowSettings
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        model: NnunetModel,
        paths: list[Path],
        options: SessionOptions | None,
        batch_size: int = 2,
        mirror_tta: bool = True,
    ) -> ModelRunner:
        """Load every fold's network in the engine ``options`` names."""
        rule = model.resampling_logits
        if rule.order_z > 1 or model.resampling_data.order_z > 1:
            raise ModelBundleError(
                f"{model.name}: order_z above 1 is not supported (nnU-Net's default is 0)"
            )
        settings = WindowSettings(
            patch_size=model.patch_size,
            tile_step_size=model.tile_step_size,
            gaussian=model.gaussian,
            sigma_scale=model.gaussian_sigma_scale,
            value_scaling_factor=model.gaussian_value_scaling_factor,
            mirror_axes=model.mirror_axes if mirror_tta else (),
            batch_size=batch_size,
        )
        return cls(model, [open_model(p, options) for p in paths], settings)

    def predict(
        self, data: np.ndarray, spacing: Spacing3, progress: Progress | None = None
    ) -> np.ndarray:
        """nnU-Net labels (postprocessed) for ``(C, *array)`` input in nnU-Net's convention."""
        start = time.perf_counter()
        image, geometry = preprocess(data, spacing, self.model)
        self.timings["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        predictors = [f.predict for f in self.folds]
        obstacle = streaming_obstacle(geometry, self.model)
        if obstacle is None:
            # Logit rows go to the export as soon as no tile reaches them any more.
            rows = _TimedRows(stream_folds(image, predictors, self.settings, progress))
            labels = stream_labels(rows, geometry, self.model)
            self.timings["infer"] = rows.seconds
        else:
            logger.info("%s: logits kept whole on the network grid: %s", self.model.name, obstacle)
            logits = predict_folds(image, predictors, self.settings, progress)
            self.timings["infer"] = time.perf_counter() - start
            labels = logits_to_labels(logits, geometry, self.model)
            del logits
        del image
        labels = apply_postprocessing(np.ascontiguousarray(labels), self.model.postprocessing)
        self.timings["postprocess"] = time.perf_counter() - start - self.timings["infer"]
        return labels


@dataclass
class _TimedRows:
    """``rows`` passed on, the time spent producing them (the inference) added up."""

    rows: Iterator[LogitRows]
    seconds: float = 0.0

    def __iter__(self) -> Iterator[LogitRows]:
        while True:
            start = time.perf_counter()
            item = next(self.rows, None)
            self.seconds += time.perf_counter() - start
            if item is None:
                return
            yield item


class NnunetSegmenter(ModelSegmenter):
    """An nnU-Net v2 bundle (``"runtime": "nnunet-v2"``) loaded into its engine."""

    def __init__(
        self,
        bundle: ModelBundle,
        options: SessionOptions | None = None,
        batch_size: int = 2,
        mirror_tta: bool = True,
    ) -> None:
        recipe = bundle.manifest.nnunet
        if recipe is None:
            raise ModelBundleError(f"{bundle.path}: not an nnU-Net bundle (no nnunet block)")
        if max(recipe.label_numbers, default=0) > 255:
            raise ModelBundleError(f"{bundle.path}: more than 255 bundle labels")
        self.bundle = bundle
        self.channels = recipe.channels
        self.runners = [
            ModelRunner.load(model, paths, options, batch_size, mirror_tta)
            for model, paths in zip(recipe.models, bundle.fold_paths(), strict=True)
        ]

    @property
    def provider(self) -> str:
        """Where the first fold's network runs (all folds share the options)."""
        return self.runners[0].folds[0].provider

    @property
    def mirroring(self) -> bool:
        """Whether any model mirrors (a ``NoMirroring`` trainer's model never does)."""
        return any(runner.settings.mirror_axes for runner in self.runners)

    def use_fast_tiling(self) -> None:
        """Tiles overlapping by a quarter instead of the model's step (a quick look)."""
        for runner in self.runners:
            step = max(runner.settings.tile_step_size, 0.75)
            runner.settings = replace(runner.settings, tile_step_size=step)

    def smoke_test(self) -> None:
        """Run every fold's network once on a zero patch of its model's patch size."""
        for runner in self.runners:
            model = runner.model
            patch = np.zeros((1, model.num_channels, *model.patch_size), dtype=np.float32)
            expected = (1, model.num_outputs, *model.patch_size)
            for fold, network in zip(model.folds, runner.folds, strict=True):
                try:
                    run_on_zero_patch(
                        network.predict, patch, expected, f"{model.num_outputs} outputs"
                    )
                except ModelBundleError as exc:
                    raise ModelBundleError(f"{fold.onnx}: {exc}") from exc

    def segment(
        self,
        volume: Volume,
        progress: Progress | None = None,
        values: np.ndarray | None = None,
        secondary: Sequence[np.ndarray] = (),
    ) -> Segmentation:
        """Segment ``volume``: every model in order, label maps merged; timings summed.

        ``volume`` is channel 0 (its grid is the output grid); ``secondary`` the values of
        channels 1, 2, … on that grid (:func:`service.segment.secondary_values` resamples
        them), stacked in channel order as nnU-Net reads ``case_0000``, ``case_0001``, ….
        """
        values = volume.array if values is None else values
        channels = self.channels
        if 1 + len(secondary) != len(channels):
            names = ", ".join(f"{c.name} ({c.modality})" for c in channels)
            raise ModelBundleError(
                f"{self.bundle.path}: the model takes {len(channels)} channels ({names}), "
                f"{1 + len(secondary)} series were given"
            )
        for index, other in enumerate(secondary, start=1):
            if other.shape != values.shape:
                raise ValueError(
                    f"channel {index} has shape {other.shape}, not channel 0's {values.shape}; "
                    "resample it onto the primary grid first"
                )
        if secondary:
            data = np.stack(
                [np.asarray(v, dtype=np.float32).transpose(2, 1, 0) for v in (values, *secondary)]
            )
        else:
            data = values.transpose(2, 1, 0)[None]  # SimpleITK's array order
        spacing = nnunet_spacing(volume.affine)
        merged = np.zeros(volume.array.shape, dtype=np.uint8)
        merged_nn = merged.transpose(2, 1, 0)  # a view in nnU-Net's order
        timings = dict.fromkeys(("preprocess", "infer", "postprocess"), 0.0)
        for runner in self.runners:
            labels = runner.predict(data, spacing, progress)
            start = time.perf_counter()
            for value, number in runner.model.label_map.items():
                merged_nn[labels == value] = number
            del labels
            runner.timings["postprocess"] += time.perf_counter() - start
            for stage, seconds in runner.timings.items():
                timings[stage] += seconds
        return Segmentation(
            labels=merged,
            table=self.bundle.manifest.label_table(),
            values=values,
            provider=self.provider,
            timings=timings,
        )
