"""Settings of one training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    """How long, how fast and how often a training run validates and saves."""

    steps: int = 2000
    batch_size: int = 2
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    foreground_ratio: float = 0.67
    #: Probability of each orientation flip (inputs are reoriented to LPS before the network).
    flip_prob: float = 0.1
    validate_every: int = 100
    seed: int = 0
    #: "auto" uses CUDA (with AMP) when present, else CPU.
    device: str = "auto"
    amp: bool = True
    dice_weight: float = 1.0
    #: Clip the gradient norm to this each step (nnU-Net uses 12); None: no clipping.
    grad_clip: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.validate_every < 1:
            raise ValueError("steps, batch size and validation interval must be positive")
        if self.learning_rate <= 0:
            raise ValueError("learning rate must be positive")
        if not 0 <= self.foreground_ratio <= 1:
            raise ValueError("foreground ratio must lie in [0, 1]")
        if not 0 <= self.flip_prob <= 1:
            raise ValueError("flip probability must lie in [0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("gradient clipping norm must be positive")

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)
