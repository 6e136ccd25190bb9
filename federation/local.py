"""Local training and evaluation of a site's task heads (the ClientApp's pure functions).

Each head is binary (background, organ). A site trains the shared encoder and only the heads it
holds labels for; FedProx adds ``mu / 2 * ||w - w_global||^2`` to the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from federation.sites import SiteCase
from training.engine.step import HeadTarget, StepSettings, partial_label_loss, train_step
from training.losses import LabelSupervision, MarginalLoss
from training.metrics import dice
from training.models import ModelConfig, MultiTaskUNet


@dataclass(frozen=True)
class LocalTraining:
    """Settings of one site's local round."""

    steps: int = 4
    learning_rate: float = 3e-3
    proximal_mu: float = 0.0
    seed: int = 0
    #: Clip the gradient norm to this each step; None: no clipping.
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.learning_rate <= 0 or self.proximal_mu < 0:
            raise ValueError("steps and learning rate must be positive, proximal mu >= 0")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError("gradient clipping norm must be positive")


def model_config(heads: Sequence[str], filters: Sequence[int]) -> ModelConfig:
    """One binary head per task, in sorted order so every site builds the same model."""
    return ModelConfig(heads={h: 2 for h in sorted(set(heads))}, filters=tuple(filters))


def get_arrays(model: MultiTaskUNet) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays (copies)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def set_arrays(model: MultiTaskUNet, arrays: Mapping[str, np.ndarray]) -> None:
    """Load numpy arrays into ``model`` (strict: names and shapes must match)."""
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})


def _padded(array: np.ndarray, divisor: int) -> np.ndarray:
    pads = [(0, -s % divisor) for s in array.shape]
    return np.pad(array, pads, mode="edge" if array.dtype.kind == "f" else "constant")


def _image(case: SiteCase, divisor: int) -> torch.Tensor:
    return torch.from_numpy(_padded(case.image.astype(np.float32), divisor))[None, None]


def _target(case: SiteCase, head: str, divisor: int) -> torch.Tensor:
    return torch.from_numpy(_padded(case.target(head), divisor))[None]


def _loss(
    model: MultiTaskUNet,
    image: torch.Tensor,
    targets: Mapping[str, HeadTarget],
    loss_fn: MarginalLoss,
    anchor: Sequence[torch.Tensor],
    proximal_mu: float,
) -> torch.Tensor:
    """The supervised heads' loss, plus FedProx's ``mu / 2 * ||w - w_global||^2``."""
    loss = partial_label_loss(model, image, targets, loss_fn)
    if proximal_mu:
        drift = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
        loss = loss + proximal_mu / 2 * drift
    return loss


def train_heads(
    model: MultiTaskUNet,
    cases: Sequence[SiteCase],
    heads: Sequence[str],
    settings: LocalTraining,
    unknown_as_background: bool = False,
) -> float:
    """Train the encoder and ``heads`` on whole volumes; returns the mean loss of the round.

    A head a case does not annotate gets no loss from that case: the organ is unknown there,
    not background. ``unknown_as_background`` trains it as background instead, the naive
    pooling that the experiments compare against.
    """
    if not cases or not heads:
        raise ValueError("local training needs cases and at least one head")

    def known(case: SiteCase, head: str) -> bool:
        return unknown_as_background or case.annotated is None or head in case.annotated

    eligible = [c for c in cases if any(known(c, h) for h in heads)]
    if not eligible:
        raise ValueError(f"no case annotates any of the heads {sorted(heads)}")
    rng = np.random.default_rng(settings.seed)
    anchor = [p.detach().clone() for p in model.parameters()]
    trainable = list(model.encoder.parameters())
    for head in heads:
        trainable += list(model.heads[head].parameters())
    optimizer = torch.optim.Adam(trainable, lr=settings.learning_rate)
    loss_fn = MarginalLoss(2)
    full = [LabelSupervision.full(2)]
    step_settings = StepSettings(grad_clip=settings.grad_clip)
    model.train()
    losses = []
    for _ in range(settings.steps):
        case = eligible[int(rng.integers(len(eligible)))]
        image = _image(case, model.config.divisor)
        targets = {
            h: HeadTarget(_target(case, h, model.config.divisor), full)
            for h in heads
            if known(case, h)
        }
        compute = partial(_loss, model, image, targets, loss_fn, anchor, settings.proximal_mu)
        losses.append(train_step(optimizer, compute, step_settings))
    return float(np.mean(losses))


@torch.no_grad()
def predict(model: MultiTaskUNet, case: SiteCase, head: str) -> np.ndarray:
    """Binary prediction of ``head`` on the case's grid."""
    model.eval()
    image = _image(case, model.config.divisor)
    labels = torch.argmax(model(image, head), dim=1)[0].numpy()
    i, j, k = case.image.shape
    return labels[:i, :j, :k] == 1


def evaluate_heads(
    model: MultiTaskUNet, cases: Sequence[SiteCase], heads: Sequence[str]
) -> dict[str, list[float]]:
    """Dice of every case for every head (organs absent from a case's truth are skipped)."""
    scores: dict[str, list[float]] = {h: [] for h in heads}
    for case in cases:
        for head in heads:
            truth = case.target(head).astype(bool)
            if truth.any():
                scores[head].append(float(dice(predict(model, case, head), truth)))
    return scores
