"""The inference thread count: settings, ``fedseg segment --threads`` and the ONNX session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.cli.main import main
from service.config import Settings, get_settings
from service.dicom.volume import Discovery
from service.inference.bundle import save_bundle
from service.segment import SegmentOptions, StudyResult, StudySegmenter, segment_study
from tests.service.inference.conftest import pointwise_model, threshold_manifest


def _bundle(path: Path) -> Path:
    manifest = threshold_manifest(
        "pet-lesion", normalisation={"kind": "suv", "low": 0.0, "high": 10.0}
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.4, -0.4]))
    return save_bundle(path, model, manifest).path


def test_threads_come_from_the_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_settings().inference_threads == 0
    monkeypatch.setenv("FEDSEG_INFERENCE_THREADS", "3")
    assert get_settings().inference_threads == 3
    assert get_settings(inference_threads=1).inference_threads == 1
    assert get_settings(inference_threads=None).inference_threads == 3
    monkeypatch.setenv("FEDSEG_INFERENCE_THREADS", "-1")
    with pytest.raises(ValidationError):
        get_settings()


def _session_threads(segmenter: StudySegmenter) -> list[int]:
    return [
        s.model._session.get_session_options().intra_op_num_threads for s in segmenter.segmenters
    ]


def test_settings_threads_reach_the_onnxruntime_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _bundle(tmp_path / "bundle")
    seen: list[list[int]] = []

    def run(self: StudySegmenter, *args: object, **kwargs: object) -> StudyResult:
        seen.append(_session_threads(self))
        return StudyResult(series=[], timings={})

    monkeypatch.setattr(StudySegmenter, "run_found", run)
    monkeypatch.setattr("service.segment.discover", lambda *a: Discovery([], [], [], []))
    settings = Settings(inference_threads=2)
    segment_study([tmp_path], tmp_path / "out", SegmentOptions(models=(str(bundle),)), settings)
    # Explicit options win over the settings; 0 is onnxruntime's own choice.
    explicit = SegmentOptions(models=(str(bundle),), threads=1)
    segment_study([tmp_path], tmp_path / "out", explicit, settings)
    assert seen == [[2], [1]]


def test_segment_command_passes_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[tuple[int | None, int]] = []

    def fake(inputs: object, out: Path, options: SegmentOptions, settings: Settings, *a: object):  # type: ignore[no-untyped-def]
        captured.append((options.threads, settings.inference_threads))
        return StudyResult(series=[], timings=dict.fromkeys(("read", "write"), 0.0))

    monkeypatch.setattr("service.cli.segment_cmd.segment_study", fake)
    monkeypatch.setattr("service.cli.segment_cmd.STAGES", ("read", "write"))
    monkeypatch.setenv("FEDSEG_INFERENCE_THREADS", "4")
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o"), "--threads", "2"]) == 0
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert captured == [(2, 2), (4, 4)]
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path), "--out", str(tmp_path / "o"), "--threads", "-2"])
