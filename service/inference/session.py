"""onnxruntime sessions with explicit, verified execution providers.

onnxruntime-gpu silently falls back to the CPU when CUDA cannot be loaded, so the provider a
session actually got is read back after creation and reported; asking for ``cuda`` fails loudly
when it is not there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import numpy as np

from service.errors import ConfigurationError, ModelBundleError

logger = logging.getLogger(__name__)

_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class Engine(StrEnum):
    """Which inference library runs the network."""

    ONNXRUNTIME = "onnxruntime"  # CPU, CUDA, TensorRT
    OPENVINO = "openvino"  # CPU only here (Intel's runtime; also fast on AMD's AVX2/AVX-512)


class Device(StrEnum):
    """Where inference runs."""

    AUTO = "auto"  # a GPU when onnxruntime offers one, else the CPU
    CPU = "cpu"
    CUDA = "cuda"  # required: fail when no GPU provider can be used


class Precision(StrEnum):
    """Arithmetic of the network's convolutions.

    ``f32`` computes what the exported network computes (the default, and the only one
    onnxruntime runs here). ``bf16`` lets OpenVINO use bfloat16 matrix units (AMX,
    AVX512-BF16): several times faster on CPUs that have them, with logits that differ in the
    second or third digit, so labels change near boundaries; opt in only after checking the
    labels on your own cases (docs/models.md).
    """

    F32 = "f32"
    BF16 = "bf16"


class Mirroring(StrEnum):
    """Test-time mirroring: predictions averaged over the input flipped along spatial axes.

    ``model`` follows the model's own recipe, as its developers validated it: an nnU-Net model
    mirrors along the axes its trainer augmented (nnUNetPredictor's default; none for a
    ``NoMirroring`` trainer such as TotalSegmentator's), fedseg's own U-Nets do not mirror.
    ``on`` mirrors fedseg's U-Nets along all three axes and nnU-Net models along their trained
    axes only (flipping a model trained without mirroring would swap left and right organs).
    ``off`` never mirrors: up to 8 times faster, labels change slightly near boundaries.
    """

    MODEL = "model"
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class SessionOptions:
    """Threading and device options for an inference session."""

    device: Device = Device.AUTO
    engine: Engine = Engine.ONNXRUNTIME
    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    inter_op_threads: int = 0
    use_tensorrt: bool = False
    #: Let idle intra-op threads busy-wait for the next operator: lower latency on free cores,
    #: CPU taken from other processes on shared ones.
    allow_spinning: bool = True
    precision: Precision = Precision.F32

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ConfigurationError(
                f"thread counts must be 0 (onnxruntime's default) or positive, got intra-op "
                f"{self.intra_op_threads} and inter-op {self.inter_op_threads}"
            )
        object.__setattr__(self, "engine", Engine(self.engine))
        object.__setattr__(self, "device", Device(self.device))
        object.__setattr__(self, "precision", Precision(self.precision))


class InferenceModel(Protocol):
    """A loaded network, whatever the engine: ``predict`` and where it actually runs."""

    provider: str  # e.g. CPUExecutionProvider, CUDAExecutionProvider, OpenVINO:CPU

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a ``(B, C, X, Y, Z)`` float32 batch; returns its first output."""
        ...


def open_model(path: Path, options: SessionOptions | None = None) -> InferenceModel:
    """Load ``path`` in the engine ``options`` asks for, verified to run where it was asked.

    Raises
    ------
    ConfigurationError
        If the engine is not installed, or cannot run on the requested device.
    ModelBundleError
        If the engine cannot load the network.
    """
    options = options or SessionOptions()
    if options.engine is Engine.OPENVINO:
        from service.inference.openvino_engine import OpenVinoModel

        return OpenVinoModel(path, options)
    return OnnxModel(path, options)


def _onnxruntime():  # type: ignore[no-untyped-def]
    try:
        import onnxruntime
    except ImportError as exc:
        raise ConfigurationError(
            "onnxruntime is not installed; install fedseg[cpu] (or fedseg[gpu] on a GPU machine)"
        ) from exc
    return onnxruntime


def requested_providers(device: Device, available: list[str], use_tensorrt: bool) -> list[str]:
    """Providers to ask onnxruntime for, best first."""
    gpu = [p for p in _GPU_PROVIDERS if p in available]
    if not use_tensorrt:
        gpu = [p for p in gpu if p != "TensorrtExecutionProvider"]
    if device is Device.CPU:
        return ["CPUExecutionProvider"]
    if device is Device.CUDA and not gpu:
        raise ConfigurationError(
            "device 'cuda' was required but onnxruntime offers no GPU provider "
            f"(available: {', '.join(available)}); install fedseg[gpu] with a matching CUDA, "
            "or use --device cpu"
        )
    return [*gpu, "CPUExecutionProvider"]


class OnnxModel:
    """A loaded ONNX network: ``predict`` maps an input batch to its output batch."""

    def __init__(self, path: Path, options: SessionOptions | None = None) -> None:
        options = options or SessionOptions()
        if options.precision is not Precision.F32:
            raise ConfigurationError(
                f"precision '{options.precision}' was requested with engine 'onnxruntime', "
                "which fedseg runs in float32 only; use --engine openvino for bf16, or "
                "--precision f32"
            )
        ort = _onnxruntime()
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if options.allow_spinning else "0"
        )
        providers = requested_providers(
            Device(options.device), list(ort.get_available_providers()), options.use_tensorrt
        )
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelBundleError(f"{path}: onnxruntime could not load the model: {exc}") from exc
        self.provider: str = self._session.get_providers()[0]
        if options.device is Device.CUDA and self.provider not in _GPU_PROVIDERS:
            raise ConfigurationError(
                f"device 'cuda' was required but the session fell back to {self.provider}; "
                "check the CUDA/cuDNN libraries that onnxruntime-gpu needs"
            )
        if self.provider != providers[0]:
            logger.warning("asked for %s, onnxruntime gave %s", providers[0], self.provider)
        self._input = self._session.get_inputs()[0].name
        logger.info("model %s on %s", path.name, self.provider)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a ``(B, C, X, Y, Z)`` float32 batch; returns its first output."""
        outputs = self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})
        result: np.ndarray = outputs[0]
        return result


def check_self_contained(path: Path) -> None:
    """Refuse an ONNX file that needs anything besides itself (external data files).

    onnxruntime resolves external data relative to the model's folder, so a file naming another
    file of the bundle folder as its weights would load from a path; loaded from its bytes
    alone it cannot.

    Raises
    ------
    ModelBundleError
        If the network does not load from its own bytes.
    """
    ort = _onnxruntime()
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(
            path.read_bytes(), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelBundleError(
            f"{path.name} does not load from its own bytes in onnxruntime (invalid ONNX, an "
            "operator onnxruntime does not have, or external data: a bundle carries its weights "
            f"inside model.onnx): {exc}"
        ) from exc
