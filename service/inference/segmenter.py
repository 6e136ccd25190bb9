"""What every segmenter gives the study pipeline, whatever recipe runs the bundle.

:func:`service.inference.pipeline.open_segmenter` picks the implementation from the manifest's
``runtime``: fedseg's own U-Net recipe (:class:`service.inference.pipeline.Segmenter`) or
nnU-Net v2's (:class:`service.inference.nnunet.segmenter.NnunetSegmenter`). Both return a
:class:`Segmentation` on the source grid, so QC and the SEG/RTSTRUCT/SR/JSON writers are shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.dicom.volume import Volume
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle
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


class ModelSegmenter(ABC):
    """A bundle loaded into its engine, ready to segment volumes."""

    bundle: ModelBundle

    @property
    @abstractmethod
    def provider(self) -> str:
        """Where the network actually runs (execution provider or engine:device)."""

    @property
    @abstractmethod
    def mirroring(self) -> bool:
        """Whether predictions are averaged over mirrored inputs (test-time mirroring)."""

    @abstractmethod
    def segment(
        self,
        volume: Volume,
        progress: Callable[[int, int], None] | None = None,
        values: np.ndarray | None = None,
        secondary: Sequence[np.ndarray] = (),
    ) -> Segmentation:
        """Segment ``volume``; ``values`` are its model values when the caller has them.

        ``secondary`` are the model values of the further input channels (1, 2, …) of a
        multi-channel model, already resampled onto ``volume``'s grid.
        """

    @abstractmethod
    def use_fast_tiling(self) -> None:
        """Less window overlap, for a quick look (``--fast``)."""

    @abstractmethod
    def smoke_test(self) -> None:
        """Run every network once on a zero patch; raise ModelBundleError if one fails."""


def run_on_zero_patch(
    predict: Callable[[np.ndarray], np.ndarray],
    patch: np.ndarray,
    expected: tuple[int, ...],
    what: str,
) -> None:
    """Run ``predict`` on a zero patch and check the output's shape and finiteness.

    Raises
    ------
    ModelBundleError
        If it fails, returns another shape than ``expected`` or NaN/inf.
    """
    shape = "x".join(map(str, patch.shape[1:]))
    try:
        output = np.asarray(predict(patch))
    except Exception as exc:  # engines raise their own types at run time
        raise ModelBundleError(f"one inference on a zero patch of {shape} failed: {exc}") from exc
    if output.shape != expected:
        raise ModelBundleError(
            f"the network returned shape {output.shape} for one patch, the manifest implies "
            f"{expected} ({what} on the patch grid); re-export the model or fix the manifest"
        )
    if not np.isfinite(output).all():
        raise ModelBundleError("it returned NaN or inf on a patch")
