"""OpenVINO as the second CPU engine: chosen by a setting, verified at load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.errors import ConfigurationError
from service.inference.bundle import ModelBundle
from service.inference.openvino_engine import check_precision
from service.inference.pipeline import open_segmenter
from service.inference.session import Device, Engine, Precision, SessionOptions, open_model
from tests.requirements import missing


def _require_openvino() -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        missing("openvino (fedseg[cpu]) is needed for the OpenVINO engine tests")


def test_openvino_runs_the_network_like_onnxruntime(make_bundle: Callable[..., Path]) -> None:
    _require_openvino()
    path = ModelBundle.load(make_bundle()).model_path
    batch = np.random.default_rng(0).normal(size=(2, 1, 16, 16, 16)).astype(np.float32)
    ov = open_model(path, SessionOptions(device=Device.CPU, engine=Engine.OPENVINO))
    ort = open_model(path, SessionOptions(device=Device.CPU))
    assert ov.provider == "OpenVINO:CPU"
    assert ort.provider == "CPUExecutionProvider"
    np.testing.assert_allclose(ov.predict(batch), ort.predict(batch), rtol=1e-5, atol=1e-5)


def test_openvino_runs_the_threads_asked_for(make_bundle: Callable[..., Path]) -> None:
    _require_openvino()
    path = ModelBundle.load(make_bundle()).model_path
    model = open_model(
        path, SessionOptions(device=Device.CPU, engine=Engine.OPENVINO, intra_op_threads=1)
    )
    assert model.threads == 1  # type: ignore[attr-defined]


def test_a_gpu_with_openvino_fails_loudly(make_bundle: Callable[..., Path]) -> None:
    _require_openvino()
    bundle = ModelBundle.load(make_bundle())
    with pytest.raises(ConfigurationError, match=r"cuda.*openvino.*CPU only"):
        open_segmenter(bundle, SessionOptions(device=Device.CUDA, engine=Engine.OPENVINO))


def test_segmenter_reports_the_engine_that_runs(make_bundle: Callable[..., Path]) -> None:
    _require_openvino()
    bundle = ModelBundle.load(make_bundle())
    segmenter = open_segmenter(bundle, SessionOptions(device=Device.CPU, engine=Engine.OPENVINO))
    assert segmenter.provider == "OpenVINO:CPU"
    segmenter.smoke_test()


def test_engine_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSEG_INFERENCE_ENGINE", "openvino")
    assert Settings().inference_engine is Engine.OPENVINO
    monkeypatch.setenv("FEDSEG_INFERENCE_ENGINE", "tensorflow")
    with pytest.raises(ValueError, match="inference_engine"):
        Settings()
    with pytest.raises(ValueError, match="tensorflow"):
        SessionOptions(engine="tensorflow")  # type: ignore[arg-type]


def _has_bf16_units() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_bf16_runs_in_bfloat16_or_fails_loudly(make_bundle: Callable[..., Path]) -> None:
    _require_openvino()
    path = ModelBundle.load(make_bundle()).model_path
    batch = np.random.default_rng(0).normal(size=(2, 1, 16, 16, 16)).astype(np.float32)
    options = SessionOptions(device=Device.CPU, engine=Engine.OPENVINO, precision=Precision.BF16)
    if not _has_bf16_units():
        with pytest.raises(ConfigurationError, match="no bfloat16 units"):
            open_model(path, options)
        return
    bf16 = open_model(path, options)
    f32 = open_model(path, SessionOptions(device=Device.CPU, engine=Engine.OPENVINO))
    assert bf16.provider == "OpenVINO:CPU:bf16"
    low, exact = bf16.predict(batch), f32.predict(batch)
    difference = float(np.abs(low - exact).max())
    # bfloat16 keeps 8 bits of mantissa: the outputs differ (so bf16 really ran), but only in
    # the second or third digit.
    assert difference > 1e-4, "bf16 gave float32's outputs: the hint did not take effect"
    np.testing.assert_allclose(low, exact, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("requested", "compiled", "message"),
    [
        (Precision.BF16, "f32", "no bfloat16 units"),
        (Precision.F32, "bf16", "differ from the exported network"),
    ],
)
def test_a_precision_openvino_did_not_compile_is_refused(
    requested: Precision, compiled: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"'{requested}' was requested.*{compiled}"):
        check_precision(requested, compiled)
    with pytest.raises(ConfigurationError, match=message):
        check_precision(requested, compiled)
    check_precision(requested, requested.value)


def test_bf16_with_onnxruntime_fails_loudly(make_bundle: Callable[..., Path]) -> None:
    path = ModelBundle.load(make_bundle()).model_path
    with pytest.raises(ConfigurationError, match=r"bf16.*onnxruntime.*float32 only"):
        open_model(path, SessionOptions(device=Device.CPU, precision=Precision.BF16))


def test_precision_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().inference_precision is Precision.F32
    monkeypatch.setenv("FEDSEG_INFERENCE_PRECISION", "bf16")
    assert Settings().inference_precision is Precision.BF16
    monkeypatch.setenv("FEDSEG_INFERENCE_PRECISION", "int4")
    with pytest.raises(ValueError, match="inference_precision"):
        Settings()
