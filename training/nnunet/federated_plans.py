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

    def with_small_network(
        self, features: Sequence[int], patch_size: Sequence[int], batch_size: int = 2
    ) -> SharedPlans:
        """These plans with :func:`small_network` (a copy; ``self`` is unchanged)."""
        plans = small_network(self.plans, features, patch_size, batch_size)
        return SharedPlans(plans, self.dataset, self.fingerprint)


def plans_sha256(text: str) -> str:
    """SHA-256 of a plans text (:meth:`SharedPlans.as_json`) as UTF-8: what a site echoes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def small_network(
    plans: dict[str, Any],
    features: Sequence[int],
    patch_size: Sequence[int],
    batch_size: int = 2,
) -> dict[str, Any]:
    """A copy of ``plans`` with a small 3d_fullres network for a CPU.

    One 3x3x3 convolution per stage, every stage after the first halving each axis,
    ``features`` per stage, the given patch (nnU-Net's axis order, after
    ``transpose_forward``) and batch size; the other configurations are dropped. Spacing,
    normalisation and resampling stay as planned. For pilots and tests: the planner's network
    is what nnU-Net would train.

    Raises
    ------
    ValueError
        If there are fewer than three stages (with two, nnU-Net's trainer keeps one
        deep-supervision output, weights it 0 and normalises the weights to 0/0: the loss is
        NaN), a size is not positive, the patch is not 3-D or not divisible by the stages'
        total downsampling.
    """
    stages = len(features)
    if stages < 3 or min(features) < 1 or len(patch_size) != 3 or min(patch_size) < 1:
        raise ValueError(
            "a small network needs at least three stages (nnU-Net's deep-supervision loss is "
            "NaN with two), positive features, a 3-D positive patch; got features "
            f"{list(features)}, patch {list(patch_size)}"
        )
    if batch_size < 1:
        raise ValueError(f"the batch size must be positive, got {batch_size}")
    if any(size % 2 ** (stages - 1) for size in patch_size):
        raise ValueError(f"patch {list(patch_size)} is not divisible by 2^{stages - 1}")
    out: dict[str, Any] = json.loads(json.dumps(plans))
    config = out["configurations"][CONFIGURATION]
    arch = config["architecture"]["arch_kwargs"]
    arch["n_stages"] = stages
    arch["features_per_stage"] = [int(f) for f in features]
    arch["kernel_sizes"] = [[3, 3, 3]] * stages
    arch["strides"] = [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1)
    arch["n_conv_per_stage"] = [1] * stages
    arch["n_conv_per_stage_decoder"] = [1] * (stages - 1)
    config["patch_size"] = [int(p) for p in patch_size]
    config["batch_size"] = batch_size
    out["configurations"] = {CONFIGURATION: config}
    return out
