"""The production job runner: :func:`service.segment.segment_study` behind the worker protocol."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.config import Settings
from service.errors import FedsegError
from service.inference.sliding_window import Progress as WindowProgress
from service.jobs.worker import JobRunner, Progress
from service.segment import SegmentOptions, segment_study


def segment_runner(settings: Settings, options: SegmentOptions | None = None) -> JobRunner:
    """A runner that segments a study with the installed models (manifest series rules)."""
    options = options or SegmentOptions()

    def run(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        def stage(label: str) -> WindowProgress:
            return lambda done, total: progress(label, done / max(total, 1))

        result = segment_study(list(inputs), out_dir, options, settings, progress=stage)
        if result.failed:
            errors = "; ".join(
                f"{s.series_instance_uid}: {s.error}" for s in result.series if s.error
            )
            raise FedsegError(f"segmentation failed for {errors}")

    return run
