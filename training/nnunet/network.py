"""nnU-Net's network rebuilt from its plans by nnU-Net's own code, loaded and exported to ONNX.

The network is built as ``nnUNetPredictor`` builds it: the checkpoint's trainer class builds the
architecture the plans describe, without deep supervision (only the full-resolution output).
Export writes one ONNX graph per fold with the plans' patch size fixed and the batch dynamic,
and refuses a graph whose outputs differ from torch's (the rule of :mod:`training.nnunet.parity`).
"""

from __future__ import annotations

import copy
import inspect
import logging
import pydoc
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from service.errors import ModelBundleError
from training.export import network_onnx_bytes, torch_and_onnx_outputs
from training.nnunet.parity import ParityReport, compare_logits

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: Network classes of the old plans format (nnU-Net < 2.4, TotalSegmentator) nnU-Net converts.
OLD_FORMAT_CLASSES = ("PlainConvUNet", "ResidualEncoderUNet")
#: fedseg's own nnU-Net trainers (:class:`training.nnunet.trainers.nnUNetTrainerMarginal`).
_FEDSEG_TRAINERS = "training.nnunet.trainers"


@dataclass(frozen=True)
class Checkpoint:
    """The parts of an nnU-Net checkpoint the importer uses."""

    path: Path
    weights: dict[str, torch.Tensor]
    trainer_name: str
    configuration: str
    mirror_axes: tuple[int, ...]


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a ``checkpoint_*.pth``.

    nnU-Net checkpoints are pickles (numpy values in the training log), read as nnU-Net reads
    them: only import folders from a source you trust.

    Raises
    ------
    ModelBundleError
        If the file is unreadable or lacks a field nnU-Net writes.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for broken files
        raise ModelBundleError(f"{path}: not a readable torch checkpoint: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelBundleError(f"{path}: expected nnU-Net's checkpoint dictionary")
    for field in ("network_weights", "trainer_name", "init_args"):
        if field not in data:
            raise ModelBundleError(f"{path}: no {field!r} field (not an nnU-Net v2 checkpoint)")
    configuration = (
        data["init_args"].get("configuration") if isinstance(data["init_args"], dict) else None
    )
    if not isinstance(configuration, str):
        raise ModelBundleError(f"{path}: init_args.configuration is missing")
    axes = data.get("inference_allowed_mirroring_axes")
    weights = {}
    for key, value in data["network_weights"].items():
        for prefix in ("module.", "_orig_mod."):  # DDP and torch.compile wrappers
            key = key.removeprefix(prefix)
        weights[key] = value
    return Checkpoint(
        path=path,
        weights=weights,
        trainer_name=str(data["trainer_name"]),
        configuration=configuration,
        mirror_axes=tuple(int(a) for a in axes) if axes is not None else (),
    )


def find_trainer_class(name: str) -> Any:
    """nnU-Net's trainer class called ``name``, importing only the module that defines it.

    nnU-Net's own search imports every trainer module until it finds the name, including ones
    that need optional packages (Primus needs timm and torchvision); reading the sources first
    keeps the import to the one module. fedseg's own trainers
    (:mod:`training.nnunet.trainers`, e.g. ``nnUNetTrainerMarginal``) are found too.
    """
    import importlib

    import nnunetv2

    pattern = re.compile(rf"^class\s+{re.escape(name)}\s*[(:]", re.MULTILINE)
    if pattern.search(Path(__file__).with_name("trainers.py").read_text(encoding="utf-8")):
        found = getattr(importlib.import_module(_FEDSEG_TRAINERS), name, None)
        if isinstance(found, type):
            return found
    package = Path(nnunetv2.__path__[0])
    for source in sorted((package / "training" / "nnUNetTrainer").rglob("*.py")):
        if pattern.search(source.read_text(encoding="utf-8", errors="replace")):
            module = ".".join(("nnunetv2", *source.relative_to(package).with_suffix("").parts))
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type):
                return found
    return None


def _check_network_class(plans_path: Path, configuration: str, config: dict[str, Any]) -> None:
    where = f"{plans_path}: configurations.{configuration}"
    if "architecture" not in config:
        name = config.get("UNet_class_name")
        if name not in OLD_FORMAT_CLASSES:
            raise ModelBundleError(
                f"{where}.UNet_class_name: unknown network class {name!r} (old plans format; "
                f"known: {', '.join(OLD_FORMAT_CLASSES)})"
            )
        return
    name = config["architecture"].get("network_class_name")
    if not isinstance(name, str) or pydoc.locate(name) is None:
        raise ModelBundleError(
            f"{where}.architecture.network_class_name: unknown network class {name!r} (not "
            "importable here; install the package that defines it)"
        )


def build_network(
    plans: dict[str, Any],
    plans_path: Path,
    dataset: dict[str, Any],
    configuration: str,
    checkpoint: Checkpoint,
) -> torch.nn.Module:
    """The network of ``configuration`` with ``checkpoint``'s weights, in eval mode.

    Raises
    ------
    ModelBundleError
        If the network class or the trainer is unknown, or the weights do not fit the network
        the plans describe.
    """
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(copy.deepcopy(plans))
    raw_config = manager._internal_resolve_configuration_inheritance(configuration)
    _check_network_class(plans_path, configuration, raw_config)
    config = manager.get_configuration(configuration)
    trainer = find_trainer_class(checkpoint.trainer_name)
    if trainer is None:
        raise ModelBundleError(
            f"{checkpoint.path}: trainer_name {checkpoint.trainer_name!r} is not a trainer of the "
            "installed nnunetv2; install the package that defines it"
        )
    channels = determine_num_input_channels(manager, config, dataset)
    outputs = manager.get_label_manager(dataset).num_segmentation_heads
    if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
        network = trainer.build_network_architecture(
            manager, config, channels, outputs, enable_deep_supervision=False
        )
    else:
        network = trainer.build_network_architecture(
            config.network_arch_class_name,
            config.network_arch_init_kwargs,
            config.network_arch_init_kwargs_req_import,
            channels,
            outputs,
            enable_deep_supervision=False,
        )
    try:
        network.load_state_dict(checkpoint.weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:4]
        raise ModelBundleError(
            f"{checkpoint.path}: network_weights do not match the network that {plans_path} "
            f"(configurations.{configuration}) and dataset.json ({channels} channel(s), "
            f"{outputs} output(s)) describe: {' '.join(line.strip() for line in first)}"
        ) from exc
    return network.eval()


def export_onnx(network: torch.nn.Module, channels: int, patch_size: tuple[int, ...]) -> bytes:
    """``network`` as ONNX: input ``[N, channels, *patch_size]``, output ``[N, K, *patch_size]``."""
    with warnings.catch_warnings():
        # Tracing nnU-Net's networks warns about shape checks (constant for a fixed patch), the
        # legacy exporter's deprecation, and instance norm exported "with train=True", which is
        # what instance norm does at inference too (it normalises with the input's statistics).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return network_onnx_bytes(
            network,
            channels,
            patch_size,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            dynamic_spatial=False,
        )


def check_parity(
    network: torch.nn.Module,
    data: bytes,
    channels: int,
    patch_size: tuple[int, ...],
    source: Path,
    seed: int = 0,
) -> ParityReport:
    """Compare onnxruntime with torch on a random batch of two; refuse what the rule refuses.

    The rule (:func:`training.nnunet.parity.compare_logits`): finite outputs, each channel
    within ``PARITY_ATOL + PARITY_RTOL * (its largest |logit|)``, and the same labels wherever
    torch's top-two margin exceeds the bound.

    Raises
    ------
    ModelBundleError
        Naming ``source`` (the fold's checkpoint), the measured error and the bound.
    """
    expected, got = torch_and_onnx_outputs(
        network, data, channels, patch_size, input_name=INPUT_NAME, seed=seed
    )
    report = compare_logits(expected, got)
    if report.problem is not None:
        raise ModelBundleError(f"{source}: {report.problem}; nothing was written")
    return report
