"""Export a federated model's binary organ heads as one ``ct-organs`` service bundle.

The federation trains one binary head (background, organ) per organ so that sites labelling
different organs can be aggregated selectively. The service expects one softmax output over the
task's label table. The merged network gives background the logit 0 and each organ the margin
``logit(organ) - logit(background)`` of its head; organs without a head get a constant
:data:`ABSENT_LOGIT` and are never predicted. For a single organ this reproduces the binary
head's softmax exactly; with several, a voxel goes to the organ with the largest positive margin.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from federation.errors import PromotionError
from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, save_bundle
from training.export import OPSET, PARITY_TOLERANCE, ExportInfo, build_manifest
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


def _onnx_bytes(network: MergedOrganHeads, patch_size: tuple[int, int, int]) -> bytes:
    example = torch.zeros(1, network.model.config.in_channels, *patch_size)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _parity(network: MergedOrganHeads, data: bytes, patch_size: tuple[int, int, int]) -> float:
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, network.model.config.in_channels, *patch_size, generator=generator)
    with torch.no_grad():
        expected = network(x).numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    return float(np.max(np.abs(got - expected)))


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
    data = _onnx_bytes(network, task.patch_size)
    difference = _parity(network, data, task.patch_size)
    if difference > PARITY_TOLERANCE:
        raise PromotionError(
            f"ONNX export of the merged {task.name.value} heads differs from torch by "
            f"{difference:.2e} (tolerance {PARITY_TOLERANCE}); no bundle written"
        )
    logger.info("ONNX parity of merged %s heads: max |difference| %.2e", task.name, difference)
    try:
        return save_bundle(out_dir, data, build_manifest(task, info))
    except ModelBundleError as exc:
        raise PromotionError(f"could not write the bundle in {out_dir}: {exc}") from exc
