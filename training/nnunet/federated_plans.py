"""What the federation's server sends every nnU-Net site, and nnU-Net's folder variables.

:class:`SharedPlans` is made on the server by :func:`federation.nnunet.plans.plan` (nnU-Net's
planner on the pooled fingerprint) and used at each site by :mod:`training.nnunet.local_round`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: nnU-Net's label name for voxels the loss must skip.
IGNORE = "ignore"
_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@dataclass(frozen=True)
class SharedPlans:
    """What the server sends every site: nnU-Net's plans, dataset.json and pooled fingerprint."""

    plans: dict[str, Any]
    dataset: dict[str, Any]
    fingerprint: dict[str, Any]

    @property
    def dataset_name(self) -> str:
        """nnU-Net's ``DatasetNNN_Name`` of the federation."""
        return str(self.plans["dataset_name"])

    def as_json(self) -> str:
        """The message body (one JSON document)."""
        return json.dumps(
            {"plans": self.plans, "dataset": self.dataset, "fingerprint": self.fingerprint},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SharedPlans:
        """Inverse of :meth:`as_json`."""
        data = json.loads(text)
        return cls(data["plans"], data["dataset"], data["fingerprint"])


@contextmanager
def nnunet_folders(root: Path, extra: Mapping[str, str] | None = None) -> Iterator[Path]:
    """Point nnU-Net's folder variables (and ``extra`` variables) at ``root``'s sub-folders.

    nnU-Net reads ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` from the
    environment when a path is used, so they are set for the block and restored after it. The
    process environment is shared: do not plan or train two federations in one process at once.
    """
    names = {name: str(root / name.removeprefix("nnUNet_")) for name in _PATH_VARIABLES}
    names |= dict(extra or {})
    before = {name: os.environ.get(name) for name in names}
    for name, value in names.items():
        if name in _PATH_VARIABLES:
            Path(value).mkdir(parents=True, exist_ok=True)
        os.environ[name] = value
    try:
        yield root
    finally:
        for name, previous in before.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous
