"""Markdown experiment reports: tables, timing, hardware and the exact command."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else the platform's processor name."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no /proc
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return f"{value.strip()} ({platform.machine()})"
    return platform.processor() or platform.machine()


def hardware() -> str:
    """CPU/GPU description of this machine (no host names)."""
    import torch

    cpu = cpu_model()
    threads = torch.get_num_threads()
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({threads} threads)"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    else:
        text += ", no GPU"
    return text


def mean_sd(values: Sequence[float]) -> str:
    """``0.812 ± 0.034 (n=4)``; ``–`` when empty."""
    if not values:
        return "–"
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return f"{array.mean():.3f} ± {sd:.3f} (n={array.size})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class RunInfo:
    """How a report's numbers were produced."""

    command: str
    seconds: float
    smoke: bool

    def markdown(self) -> str:
        """The provenance paragraph every report carries."""
        size = "smoke-sized (CI) run" if self.smoke else "full run"
        return (
            f"*{size}; took {self.seconds:.0f} s on {hardware()}.*\n\n"
            f"Command:\n\n```\n{self.command}\n```\n"
        )


def time_section(seconds: Mapping[str, float]) -> str:
    """A report's "Time (s)" section: one row per phase of the run."""
    rows = [[phase, f"{value:.0f}"] for phase, value in seconds.items()]
    return "## Time (s)\n\n" + table(["phase", "seconds"], rows)


def write_report(path: Path, title: str, run: RunInfo, sections: Sequence[str]) -> Path:
    """Write ``# title``, the provenance and ``sections`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join([f"# {title}", run.markdown(), *sections])
    path.write_text(body.rstrip() + "\n", encoding="utf-8")
    return path
