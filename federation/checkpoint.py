"""Server checkpoints: the global model after each round, so a restarted run resumes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from federation.errors import FederationError

_NAME = re.compile(r"round-(\d{4})\.npz$")


@dataclass
class RunState:
    """The global model after ``last_round``, and who takes part: what a run continues from.

    The round loop updates it in place; a checkpoint stores it after every round.
    """

    arrays: dict[str, np.ndarray]
    model_config: dict[str, object]
    sites: dict[str, list[str]] = field(default_factory=dict)
    last_round: int = 0


class CheckpointStore:
    """``round-NNNN.npz`` files (arrays) with a JSON sidecar, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, state: RunState) -> Path:
        """Write ``state``; the newest complete file is what :meth:`latest` returns."""
        stem = self.folder / f"round-{state.last_round:04d}"
        meta = {
            "server_round": state.last_round,
            "model_config": state.model_config,
            "sites": state.sites,
            "names": list(state.arrays),
        }
        partial = stem.with_suffix(".json.part")
        partial.write_text(json.dumps(meta, indent=2))
        partial.replace(stem.with_suffix(".json"))
        tmp = stem.with_suffix(".part.npz")
        np.savez(tmp, *state.arrays.values())
        tmp.replace(stem.with_suffix(".npz"))
        return stem.with_suffix(".npz")

    def rounds(self) -> list[int]:
        """Rounds with a complete checkpoint, ascending."""
        found = []
        for path in self.folder.glob("round-*.npz"):
            match = _NAME.search(path.name)
            if match and path.with_suffix(".json").exists():
                found.append(int(match.group(1)))
        return sorted(found)

    def load(self, server_round: int) -> RunState:
        """The checkpoint of ``server_round``.

        Raises
        ------
        FederationError
            If it is missing or damaged.
        """
        stem = self.folder / f"round-{server_round:04d}"
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            with np.load(stem.with_suffix(".npz")) as data:
                values = [data[f"arr_{i}"] for i in range(len(meta["names"]))]
        except (OSError, KeyError, ValueError) as exc:
            raise FederationError(
                f"{stem}: checkpoint missing or damaged; delete it to restart from the "
                f"previous round: {exc}"
            ) from exc
        return RunState(
            arrays=dict(zip(meta["names"], values, strict=True)),
            model_config=meta["model_config"],
            sites={str(k): list(v) for k, v in meta["sites"].items()},
            last_round=int(meta["server_round"]),
        )

    def latest(self) -> RunState | None:
        """The newest checkpoint, or None when the run has not completed a round."""
        rounds = self.rounds()
        return self.load(rounds[-1]) if rounds else None


def model_hash(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over parameter names, dtypes, shapes and bytes (stable across processes)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
