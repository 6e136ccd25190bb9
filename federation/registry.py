"""The model registry: one entry per round's global model (version, hash, sites, metrics)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from federation.message_keys import count_key, task_of_dice_key


@dataclass(frozen=True)
class RegistryEntry:
    """One registered global model.

    ``site_metrics`` maps site name to its federated-evaluation metrics (``dice/<task>``,
    ``num-examples``); ``task_metrics`` holds the example-weighted mean Dice per task.
    """

    version: str
    server_round: int
    model_hash: str
    sites: list[str]
    site_metrics: dict[str, dict[str, float]]
    task_metrics: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)
    #: Central DP budget spent so far (epsilon, delta, noise multiplier, clip); empty when off.
    privacy: dict[str, float] = field(default_factory=dict)
    created: str = ""
    #: The promotion gate's decision on this round's model (set at the end of a run).
    promotion: dict[str, object] = field(default_factory=dict)


class ModelRegistry:
    """Append-only JSON-lines file ``registry.jsonl``."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "registry.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def register(self, entry: RegistryEntry) -> None:
        """Append ``entry`` (a later entry for the same round supersedes an earlier one)."""
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(asdict(entry), sort_keys=True) + "\n")

    def entries(self) -> list[RegistryEntry]:
        """Every entry, newest per round, in round order."""
        if not self.path.exists():
            return []
        by_round: dict[int, RegistryEntry] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = RegistryEntry(**json.loads(line))
                by_round[entry.server_round] = entry
        return [by_round[r] for r in sorted(by_round)]


def task_metrics(site_metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """Example-weighted mean of each task's Dice (``dice_key``) over the sites that report it."""
    totals: dict[str, list[float]] = {}
    for metrics in site_metrics.values():
        for key, value in metrics.items():
            task = task_of_dice_key(key)
            if task is not None:
                weight = float(metrics.get(count_key(task), 1.0))
                acc = totals.setdefault(task, [0.0, 0.0])
                acc[0] += weight * value
                acc[1] += weight
    return {task: s / w for task, (s, w) in totals.items() if w > 0}
