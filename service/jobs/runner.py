"""The production job runner: :func:`service.segment.segment_study` behind the worker protocol.

:class:`SegmentJob` is one job's whole configuration (settings, options, a snapshot of the
routing rules) as a picklable value, so the server can run it in a child process
(:mod:`service.jobs.isolation`); :func:`segment_runner` runs it in the calling process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from service.config import Settings
from service.errors import FedsegError
from service.inference.sliding_window import Progress as WindowProgress
from service.jobs.isolation import IsolatedRunner
from service.jobs.routing import RuleSource
from service.jobs.worker import JobRunner, Progress
from service.segment import SegmentOptions, segment_study
from service.selection import Rule

logger = logging.getLogger(__name__)


@dataclass
class RuleValues:
    """A routing rule's values, detached from the database (what a child process receives)."""

    id: int
    priority: int
    modality: str
    body_part: str
    series_description: str
    models: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rule: Rule) -> RuleValues:
        """Copy ``rule`` (a database row or any object with the attributes)."""
        return cls(
            rule.id,
            rule.priority,
            rule.modality or "",
            rule.body_part or "",
            rule.series_description or "",
            list(rule.models),
        )


@dataclass(frozen=True)
class SegmentJob:
    """Segment a study with the installed models: a picklable :class:`JobRunner`.

    The series-selection step (:mod:`service.selection`) applies ``rules`` to the headers it
    reads once; without rules, or when none matches, every installed model whose manifest
    selects a series runs. Models named in ``options`` override both.
    """

    settings: Settings
    options: SegmentOptions
    rules: tuple[RuleValues, ...] = ()

    def __call__(self, inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        """Run the pipeline; raise :class:`FedsegError` when a series failed."""

        def stage(label: str) -> WindowProgress:
            return lambda done, total: progress(label, done / max(total, 1))

        result = segment_study(
            list(inputs), out_dir, self.options, self.settings, progress=stage, rules=self.rules
        )
        if result.failed:
            errors = "; ".join(
                f"{s.series_instance_uid}: {s.error}" for s in result.series if s.error
            )
            raise FedsegError(f"segmentation failed for {errors}")


def segment_job(
    settings: Settings, options: SegmentOptions | None = None, rules: RuleSource | None = None
) -> SegmentJob:
    """The job as configured now: ``rules`` are read at this call (edits apply to new jobs)."""
    # The server loads installed models only: a rule or option naming a folder is refused.
    base = replace(options or SegmentOptions(), any_folder=False)
    current = tuple(RuleValues.of(r) for r in rules()) if rules is not None else ()
    return SegmentJob(settings, base, current)


def segment_runner(
    settings: Settings, options: SegmentOptions | None = None, rules: RuleSource | None = None
) -> JobRunner:
    """A runner that segments in the calling process, reading ``rules`` at each job."""

    def run(inputs: Sequence[Path], out_dir: Path, progress: Progress) -> None:
        segment_job(settings, options, rules)(inputs, out_dir, progress)

    return run


def isolated_segment_runner(
    settings: Settings, options: SegmentOptions | None = None, rules: RuleSource | None = None
) -> IsolatedRunner:
    """A runner that segments each job in a child process under the job memory limit.

    What the server and ``fedseg worker`` run: a job that runs out of memory, or crashes,
    takes only its own process down, never the API, the SCP or the worker.
    """
    return IsolatedRunner(
        lambda: segment_job(settings, options, rules), settings.job_memory_limit_bytes
    )
