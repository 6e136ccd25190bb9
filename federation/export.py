"""Export a federated model's binary organ heads as one ``ct-organs`` service bundle.

The federation trains one binary head (background, organ) per organ so that sites labelling
different organs can be aggregated selectively. The service expects one softmax output over the
task's label table. The merged network gives background the logit 0 and each organ the margin
``logit(organ) - logit(background)`` of its head; organs without a head get a constant
:data:`ABSENT_LOGIT` and are never predicted. For a single organ this reproduces the binary
head's softmax exactly; with several, a voxel goes to the organ with the largest positive margin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from federation.errors import PromotionError
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, save_bundle
from training.export import (
    ExportInfo,
    build_manifest,
    network_onnx_bytes,
    onnx_parity,
)
from training.models import MultiTaskUNet
from training.tasks import Task

logger = logging.getLogger(__name__)

#: Logit of a label the federated model has no head for (softmax probability ~0).
ABSENT_LOGIT = -1.0e4


class MergedOrganHeads(torch.nn.Module):
    """Softmax logits over ``labels`` (background first) from a model's binary organ heads."""

    def __init__(self, model: MultiTaskUNet, labels: Sequence[str]) -> None:
        super().__init__()
        present = [name for name in labels if name in model.heads]
        if not present:
            raise PromotionError(
                f"the model has none of the task's labels as a head (heads {sorted(model.heads)})"
            )
        for head in present:
            if model.config.heads[head] != 2:
                raise PromotionError(f"head {head!r} is not binary; cannot merge it")
        self.model = model
        self.labels = list(labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, 1 + len(labels), i, j, k)``."""
        features = self.model.encoder(x)
        margins = {}
        for name in self.labels:
            if name in self.model.heads:
                logits = self.model.heads[name](features)[0]
                margins[name] = logits[:, 1:2] - logits[:, 0:1]
        background = torch.zeros_like(next(iter(margins.values())))
        channels = [background]
        for name in self.labels:
            channels.append(margins.get(name, background + ABSENT_LOGIT))
        return torch.cat(channels, dim=1)


def export_merged_bundle(
    model: MultiTaskUNet, task: Task, out_dir: Path, info: ExportInfo
) -> ModelBundle:
    """Write ``model``'s organ heads as a verified bundle of ``task`` in ``out_dir``.

    Raises
    ------
    PromotionError
        If the heads cannot be merged or onnxruntime does not reproduce the torch logits.
    """
    labels = [task.labels[i] for i in sorted(task.labels)]
    network = MergedOrganHeads(model.eval(), labels).eval()
    in_channels = model.config.in_channels
    data = network_onnx_bytes(network, in_channels, task.patch_size)
    report = onnx_parity(network, data, in_channels, task.patch_size)
    if report.problem is not None:
        raise PromotionError(
            f"ONNX export of the merged {task.name.value} heads: {report.problem}; no bundle "
            "written"
        )
    logger.info("ONNX parity of merged %s heads: %s", task.name, report.summary())
    try:
        return save_bundle(out_dir, data, build_manifest(task, info))
    except ModelBundleError as exc:
        raise PromotionError(f"could not write the bundle in {out_dir}: {exc}") from exc
