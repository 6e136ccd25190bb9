"""What the federation's server sends every nnU-Net site.

:class:`SharedPlans` is made on the server by :func:`federation.nnunet.plans.plan` (nnU-Net's
planner on the pooled fingerprint) and used at each site by :mod:`training.nnunet.local_round`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: nnU-Net's label name for voxels the loss must skip.
IGNORE = "ignore"


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
