"""The production job runner: :func:`service.segment.segment_study` behind the worker protocol."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from service.config import Settings
from service.errors import FedsegError
from service.inference.sliding_window import Progress as WindowProgress
from service.jobs.routing import RuleSource
from service.jobs.worker import JobRunner, Progress
from service.segment import SegmentOptions, segment_study

logger = logging.getLogger(__name__)


def segment_runner(
    settings: Settings, options: SegmentOptions | None = None, rules: RuleSource | None = None
) -> JobRunner:
    """A runner that segments a study with the installed models.

    The series-selection step (:mod:`service.selection`) applies ``rules`` (read at each job)
    to the headers it reads once; without rules, or when none matches, every installed model
    whose manifest selects a series runs. Models named in ``options`` override both.
    """
    # The server loads installed models only: a rule or option naming a folder is refused.
    base = replace(options or SegmentOptions(), any_folder=False)

    def run(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        def stage(label: str) -> WindowProgress:
            return lambda done, total: progress(label, done / max(total, 1))

        current = rules() if rules is not None else ()
        result = segment_study(list(inputs), out_dir, base, settings, progress=stage, rules=current)
        if result.failed:
            errors = "; ".join(
                f"{s.series_instance_uid}: {s.error}" for s in result.series if s.error
            )
            raise FedsegError(f"segmentation failed for {errors}")

    return run
