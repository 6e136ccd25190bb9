"""What the federation's server sends every nnU-Net site.

:class:`SharedPlans` is made on the server by :func:`federation.nnunet.plans.plan` (nnU-Net's
planner on the pooled fingerprint) and used at each site by :mod:`training.nnunet.local_round`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: nnU-Net's label name for voxels the loss must skip.
IGNORE = "ignore"
#: The configuration the federation trains.
CONFIGURATION = "3d_fullres"


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


def plans_sha256(text: str) -> str:
    """SHA-256 of a plans text (:meth:`SharedPlans.as_json`) as UTF-8: what a site echoes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def small_network(
    plans: dict[str, Any], features: Sequence[int], patch_size: Sequence[int]
) -> dict[str, Any]:
    """``plans`` with a small 3d_fullres network: ``features`` per stage, ``patch_size``.

    One 3x3x3 convolution per stage, every stage after the first halving each axis, batch size
    2; the other configurations are dropped. For pilots and tests on a CPU: the planner's
    network is what nnU-Net would train.

    Raises
    ------
    ValueError
        If the patch is not divisible by the stages' total downsampling or a size is not
        positive.
    """
    stages = len(features)
    if not stages or min(features) < 1 or len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(f"features {features} and a 3-D patch {patch_size} must be positive")
    if any(size % 2 ** (stages - 1) for size in patch_size):
        raise ValueError(f"patch {patch_size} is not divisible by 2^{stages - 1}")
    out = json.loads(json.dumps(plans))
    config = out["configurations"][CONFIGURATION]
    arch = config["architecture"]["arch_kwargs"]
    arch["n_stages"] = stages
    arch["features_per_stage"] = [int(f) for f in features]
    arch["kernel_sizes"] = [[3, 3, 3]] * stages
    arch["strides"] = [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1)
    arch["n_conv_per_stage"] = [1] * stages
    arch["n_conv_per_stage_decoder"] = [1] * (stages - 1)
    config["patch_size"] = [int(p) for p in patch_size]
    config["batch_size"] = 2
    out["configurations"] = {CONFIGURATION: config}
    return out
