"""Export a trained task head as a service model bundle (ONNX + manifest + checksums).

The bundle is the only thing that passes from training to the service. Export verifies that
onnxruntime reproduces the torch logits (within 1e-4) before anything is written.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import logging
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.modules.instancenorm import _InstanceNorm

from service.errors import ModelBundleError
from service.inference.bundle import ModelBundle, save_bundle
from service.inference.manifest import (
    Manifest,
    Normalisation,
    Postprocessing,
    Provenance,
    SeriesRule,
    label_dicts,
)
from service.labels.registry import get_table
from service.qc.enum import BodyRegion
from service.qc.intended_use import IntendedUse, TrainingData, TrainingDataKind
from training.models import MultiTaskUNet
from training.models.instance_norm import use_axis_wise_norms
from training.tasks import Task

logger = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportInfo:
    """What the manifest says about a model beyond its task: identity and provenance."""

    version: str = "0.1.0"
    name: str | None = None  # default: "fedseg-<task>"
    description: str = ""
    training_sites: list[str] = field(default_factory=list)
    federated_rounds: int = 0
    data_hashes: Mapping[str, str] = field(default_factory=dict)
    validation_metrics: Mapping[str, float] = field(default_factory=dict)
    notes: str = ""
    #: Component and size filters the service applies to the labels (manifest ``postprocessing``).
    postprocessing: Postprocessing = field(default_factory=Postprocessing)
    #: The manifest's intended-use block; None: :func:`default_intended_use`.
    intended_use: IntendedUse | None = None


def default_intended_use(task: Task, info: ExportInfo) -> IntendedUse:
    """An intended use that claims nothing unstated.

    The labels' body regions (any, when they name none), no age or slice limits, and training
    data "unstated" unless the federated sites are known.
    """
    table = get_table(task.name.value)
    regions = sorted({e.qc.region for e in table.labels if e.qc and e.qc.region})
    sources = [f"federated sites: {', '.join(info.training_sites)}"] if info.training_sites else []
    return IntendedUse(
        modality=task.modality,
        body_regions=regions or list(BodyRegion),
        training_data=TrainingData(
            kind=TrainingDataKind.REAL if info.training_sites else TrainingDataKind.UNSTATED,
            sources=sources or ["not stated at export"],
        ),
    )


class _TaskHead(torch.nn.Module):
    """One task's full-size logits: the graph that goes into the ONNX file."""

    def __init__(self, model: MultiTaskUNet, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.task)


def git_commit(repo: Path | None = None) -> str:
    """The current git commit of the code, or "unknown" outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def network_onnx_bytes(
    network: torch.nn.Module,
    in_channels: int,
    patch_size: tuple[int, ...],
    *,
    input_name: str = "image",
    output_name: str = "logits",
    dynamic_spatial: bool = True,
) -> bytes:
    """Serialise a network of one image input to ONNX with a dynamic batch axis.

    fedseg's own networks also get dynamic spatial axes; nnU-Net bundles keep their fixed patch
    (``dynamic_spatial=False``), which is what nnU-Net's sliding window feeds them. Instance
    norms are exported axis-wise (:mod:`training.models.instance_norm`: the engines' own
    single-reduction norm loses precision on large patches); ``network`` itself is unchanged.
    """
    if any(isinstance(m, _InstanceNorm) and not m.track_running_stats for m in network.modules()):
        network = copy.deepcopy(network)
        use_axis_wise_norms(network)
    example = torch.zeros(1, in_channels, *patch_size)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"} if dynamic_spatial else {0: "batch"}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: axes, output_name: axes},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def torch_and_onnx_outputs(
    network: torch.nn.Module,
    data: bytes,
    in_channels: int,
    patch_size: tuple[int, ...],
    *,
    input_name: str = "image",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``network``'s torch output and the ONNX model's on the same random batch of two."""
    import onnxruntime

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, in_channels, *patch_size, generator=generator)
    with torch.no_grad():
        expected = network(x).numpy()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {input_name: x.numpy()})[0]
    return expected, got


def onnx_difference(
    network: torch.nn.Module,
    data: bytes,
    in_channels: int,
    patch_size: tuple[int, int, int],
    seed: int = 0,
) -> float:
    """Largest |torch − onnxruntime| output difference of ``network`` on a random input."""
    expected, got = torch_and_onnx_outputs(network, data, in_channels, patch_size, seed=seed)
    return float(np.max(np.abs(got - expected)))


def onnx_bytes(model: MultiTaskUNet, task: str, patch_size: tuple[int, int, int]) -> bytes:
    """Serialise one task head to ONNX with dynamic batch and spatial axes."""
    return network_onnx_bytes(_TaskHead(model, task).eval(), model.config.in_channels, patch_size)


def check_parity(
    model: MultiTaskUNet, task: str, data: bytes, patch_size: tuple[int, int, int], seed: int = 0
) -> float:
    """Largest |torch − onnxruntime| logit difference on a random input.

    Raises
    ------
    ModelBundleError
        If the difference exceeds the parity tolerance.
    """
    head = _TaskHead(model, task).eval()
    difference = onnx_difference(head, data, model.config.in_channels, patch_size, seed)
    if difference > PARITY_TOLERANCE:
        raise ModelBundleError(
            f"ONNX export of {task} differs from torch by {difference:.2e} "
            f"(tolerance {PARITY_TOLERANCE}); the bundle was not written"
        )
    return difference


def build_manifest(task: Task, info: ExportInfo) -> Manifest:
    """The manifest of a task head: labels with codes, preprocessing, provenance."""
    low, high = task.intensity_range
    return Manifest(
        name=info.name or f"fedseg-{task.name.value}",
        version=info.version,
        task=task.name.value,
        modality=task.modality,
        description=info.description or task.description,
        intended_use=info.intended_use or default_intended_use(task, info),
        labels=label_dicts(get_table(task.name.value)),
        spacing=task.spacing,
        orientation="LPS",
        normalisation=Normalisation(kind=task.normalisation, low=low, high=high),
        patch_size=task.patch_size,
        postprocessing=info.postprocessing,
        series=[SeriesRule(modality=task.modality)],
        provenance=Provenance(
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            git_commit=git_commit(),
            training_sites=list(info.training_sites),
            federated_rounds=info.federated_rounds,
            data_hashes=dict(info.data_hashes),
            validation_metrics=dict(info.validation_metrics),
            hardware=f"{platform.machine()} {platform.processor()}".strip(),
            notes=info.notes,
        ),
        onnx_opset=OPSET,
    )


def check_label_order(task: str, trained: Sequence[str], table: Sequence[str]) -> None:
    """Refuse a head trained on other labels, or the same ones in another order, than the table.

    A bundle's manifest names its classes from the label table; a head whose classes were
    numbered differently when it was trained would label every organ as another one.

    Raises
    ------
    ModelBundleError
        If the names differ in any position.
    """
    if tuple(trained) != tuple(table):
        raise ModelBundleError(
            f"task {task}: the head was trained with classes {', '.join(trained) or 'none'} "
            f"(1..{len(trained)}) but the label table now numbers them "
            f"{', '.join(table)}; retrain, or restore the label table it was trained with"
        )


def export_bundle(
    model: MultiTaskUNet,
    task: Task,
    out_dir: Path,
    info: ExportInfo,
    trained_labels: Sequence[str],
) -> ModelBundle:
    """Export ``task``'s head of ``model`` as a verified bundle in ``out_dir``.

    ``trained_labels`` are the head's class names in class order as training saw them (the
    checkpoint's ``labels``); they must equal the label table's.
    """
    manifest = build_manifest(task, info)
    check_label_order(task.name.value, trained_labels, manifest.label_table().names)
    if len(manifest.labels) + 1 != model.config.heads.get(task.name.value, -1):
        raise ModelBundleError(
            f"model head {task.name.value!r} has {model.config.heads.get(task.name.value)} "
            f"outputs but the label table needs {len(manifest.labels) + 1}"
        )
    data = onnx_bytes(model.eval(), task.name.value, task.patch_size)
    difference = check_parity(model, task.name.value, data, task.patch_size)
    logger.info("ONNX parity for %s: max |difference| %.2e", task.name.value, difference)
    return save_bundle(out_dir, data, manifest)
