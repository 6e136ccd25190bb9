"""The production job runner: :func:`service.segment.segment_study` behind the worker protocol."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.config import Settings
from service.errors import ConfigurationError
from service.jobs.worker import JobRunner, Progress


def segment_runner(settings: Settings) -> JobRunner:
    """A runner that segments a study with the installed models (manifest series rules).

    Raises
    ------
    ConfigurationError
        If this installation has no ``service.segment`` pipeline.
    """
    try:
        segment = importlib.import_module("service.segment")
    except ImportError as exc:
        raise ConfigurationError(
            f"the segmentation pipeline (service.segment) is not available: {exc}"
        ) from exc

    def run(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        def report(*args: Any) -> None:
            if len(args) >= 2 and isinstance(args[0], str):
                progress(args[0], float(args[1]))

        segment.segment_study(
            list(inputs), out_dir, segment.SegmentOptions(), settings, progress=report
        )

    return run
