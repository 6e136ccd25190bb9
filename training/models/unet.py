"""Multi-task 3D U-Net: one shared representation block and one block per task.

Parameters fall into named groups, ``"shared"`` (encoder and bottleneck) and ``"task:<name>"``
(each segmentation head, and the lesion classifier), which is the split SegViz-style selective
aggregation averages separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from training.models.blocks import ClassificationHead, SegmentationHead, SharedEncoder

SHARED_GROUP = "shared"
CLASSIFIER_NAME = "lesion-class"


def task_group(name: str) -> str:
    """Parameter group name of a task head."""
    return f"task:{name}"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`MultiTaskUNet`.

    ``heads`` maps task name to its number of output classes (background included).
    """

    heads: Mapping[str, int]
    in_channels: int = 1
    filters: tuple[int, ...] = (8, 16, 32, 64)
    deep_supervision: bool = False
    #: Classes of the lesion classification head; 0 for none.
    classifier_classes: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("a model needs at least one task head")
        if any(n < 2 for n in self.heads.values()):
            raise ValueError("every head needs at least two classes (background and one label)")
        if len(self.filters) < 2 or any(f < 1 for f in self.filters):
            raise ValueError("filters must list at least two positive widths")
        if CLASSIFIER_NAME in self.heads:
            raise ValueError(f"{CLASSIFIER_NAME!r} is reserved for the classification head")

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this."""
        return int(2 ** (len(self.filters) - 1))

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form, for checkpoints and bundles."""
        return {
            "heads": dict(self.heads),
            "in_channels": self.in_channels,
            "filters": list(self.filters),
            "deep_supervision": self.deep_supervision,
            "classifier_classes": self.classifier_classes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelConfig:
        """Inverse of :meth:`as_dict`."""
        heads = data["heads"]
        filters = data.get("filters", (8, 16, 32, 64))
        if not isinstance(heads, Mapping) or not isinstance(filters, Sequence):
            raise ValueError("model config needs a 'heads' mapping and a 'filters' list")
        return cls(
            heads={str(k): int(v) for k, v in heads.items()},
            in_channels=int(data.get("in_channels", 1)),  # type: ignore[call-overload]
            filters=tuple(int(f) for f in filters),
            deep_supervision=bool(data.get("deep_supervision", False)),
            classifier_classes=int(data.get("classifier_classes", 0)),  # type: ignore[call-overload]
        )


class MultiTaskUNet(nn.Module):
    """A 3D U-Net with a shared encoder and a decoder head per task."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SharedEncoder(config.in_channels, config.filters)
        self.heads = nn.ModuleDict(
            {
                name: SegmentationHead(config.filters, classes, config.deep_supervision)
                for name, classes in config.heads.items()
            }
        )
        self.classifier = (
            ClassificationHead(config.filters[-1], config.classifier_classes)
            if config.classifier_classes
            else None
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"input must be (batch, {self.config.in_channels}, i, j, k), got {tuple(x.shape)}"
            )
        if any(s % self.config.divisor for s in x.shape[2:]):
            raise ValueError(
                f"spatial size {tuple(x.shape[2:])} must be a multiple of {self.config.divisor}"
            )

    def segment(self, x: torch.Tensor, task: str) -> list[torch.Tensor]:
        """Logits of ``task``: full size first, then deep-supervision outputs if enabled."""
        self._check_input(x)
        if task not in self.heads:
            raise KeyError(f"model has no head {task!r}; heads: {sorted(self.heads)}")
        return self.heads[task](self.encoder(x))

    def forward(self, x: torch.Tensor, task: str | None = None) -> torch.Tensor:
        """Full-size logits of ``task`` (the only head when ``task`` is None)."""
        if task is None:
            if len(self.heads) != 1:
                raise ValueError(f"name the task: this model has heads {sorted(self.heads)}")
            task = next(iter(self.heads))
        return self.segment(x, task)[0]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion class logits of each input patch."""
        if self.classifier is None:
            raise ValueError("this model has no classification head")
        self._check_input(x)
        return self.classifier(self.encoder(x)[-1])

    def group_of(self, parameter_name: str) -> str:
        """Parameter group (``"shared"`` or ``"task:<name>"``) of a state-dict entry."""
        if parameter_name.startswith("encoder."):
            return SHARED_GROUP
        if parameter_name.startswith("heads."):
            return task_group(parameter_name.split(".")[1])
        if parameter_name.startswith("classifier."):
            return task_group(CLASSIFIER_NAME)
        raise KeyError(f"parameter {parameter_name!r} belongs to no group")

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group name, in registration order."""
        groups: dict[str, list[nn.Parameter]] = {}
        for name, parameter in self.named_parameters():
            groups.setdefault(self.group_of(name), []).append(parameter)
        return groups

    def state_dict_groups(self) -> dict[str, dict[str, torch.Tensor]]:
        """The state dict split by group (normalisation buffers included)."""
        groups: dict[str, dict[str, torch.Tensor]] = {}
        for name, tensor in self.state_dict().items():
            groups.setdefault(self.group_of(name), {})[name] = tensor
        return groups


def build_model(config: ModelConfig, seed: int) -> MultiTaskUNet:
    """A freshly initialised model; the seed is used without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MultiTaskUNet(config)
