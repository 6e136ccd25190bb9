"""OpenVINO as a second CPU engine, with the same contract as :class:`OnnxModel`.

OpenVINO runs nnU-Net's 3D U-Nets near the CPU's matmul rate (issue 13: 83 GFLOP/s on one
thread where onnxruntime reaches 45). The device is verified after compilation: the compiled
model's ``EXECUTION_DEVICES`` must be exactly the CPU, and asking for a GPU fails loudly,
since OpenVINO here is the CPU engine (GPUs go through onnxruntime's CUDA/TensorRT).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import ConfigurationError, ModelBundleError
from service.inference.session import Device, Precision, SessionOptions

logger = logging.getLogger(__name__)


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ConfigurationError(
            "engine 'openvino' was requested but OpenVINO is not installed; install fedseg[cpu] "
            "or choose FEDSEG_INFERENCE_ENGINE=onnxruntime"
        ) from exc
    return openvino


def check_precision(requested: Precision, compiled: str) -> None:
    """Refuse a compiled model whose precision is not the one asked for.

    OpenVINO falls back to f32 on CPUs without bfloat16 units, and may choose bf16 by itself
    on CPUs with them, so the precision is read back after compilation.

    Raises
    ------
    ConfigurationError
        If OpenVINO compiled the network in another precision.
    """
    if compiled.lower() != requested.value:
        hint = (
            "this CPU has no bfloat16 units (AMX or AVX512-BF16); use --precision f32"
            if requested is Precision.BF16
            else "results would differ from the exported network"
        )
        raise ConfigurationError(
            f"precision '{requested}' was requested but OpenVINO compiled the network in "
            f"{compiled}; {hint}"
        )


class OpenVinoModel:
    """A network compiled by OpenVINO for the CPU."""

    def __init__(self, path: Path, options: SessionOptions) -> None:
        if options.device is Device.CUDA:
            raise ConfigurationError(
                "device 'cuda' was requested with engine 'openvino', which fedseg runs on the "
                "CPU only; use --engine onnxruntime for a GPU, or --device cpu"
            )
        ov = _openvino()
        core = ov.Core()
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": options.precision.value,
        }
        if options.intra_op_threads > 0:
            config["INFERENCE_NUM_THREADS"] = options.intra_op_threads
        try:
            compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelBundleError(f"{path}: OpenVINO could not load the model: {exc}") from exc
        devices = [str(d) for d in compiled.get_property("EXECUTION_DEVICES")]
        if devices != ["CPU"]:
            raise ConfigurationError(
                f"engine 'openvino' was asked to run on the CPU but compiled for {devices}"
            )
        compiled_precision = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        check_precision(options.precision, compiled_precision.get_type_name())
        self.threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        if options.intra_op_threads > 0 and self.threads != options.intra_op_threads:
            raise ConfigurationError(
                f"OpenVINO runs {self.threads} threads where {options.intra_op_threads} were asked"
            )
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        # The provider names the precision when it is not the network's own (it is recorded
        # with every result).
        self.provider = "OpenVINO:CPU" + ("" if options.precision is Precision.F32 else ":bf16")
        logger.info("model %s on %s (%d threads)", path.name, self.provider, self.threads)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a ``(B, C, X, Y, Z)`` float32 batch; returns its first output."""
        result = self._request.infer([np.ascontiguousarray(batch, np.float32)])
        out: np.ndarray = np.array(result[self._compiled.output(0)])
        return out
