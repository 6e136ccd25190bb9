"""One optimiser step, shared by every training loop: forward, loss, backward, clip, step.

The segmentation loop (:mod:`training.engine.loop`), the lesion classifier
(:mod:`training.engine.classify`) and a federated site's local round (:mod:`federation.local`)
differ in what they feed the model and in their loss; each passes that as a closure to
:func:`train_step`, which owns the rest. Segmentation losses go through
:func:`partial_label_loss`: the marginal loss of every supervised head, with deep supervision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from training.losses import LabelSupervision, MarginalLoss
from training.models import MultiTaskUNet


@dataclass(frozen=True)
class HeadTarget:
    """A head's label map for one batch, and which of its classes each case annotates."""

    label: torch.Tensor
    supervision: Sequence[LabelSupervision]


def deep_supervision_loss(
    loss_fn: MarginalLoss,
    outputs: Sequence[torch.Tensor],
    label: torch.Tensor,
    supervision: Sequence[LabelSupervision],
) -> torch.Tensor:
    """Loss of the full-size logits plus, halved per level, of the coarser outputs (nnU-Net).

    ``outputs[0]`` is full size and ``outputs[n]`` is ``2**n`` times smaller on each axis; its
    target is the label map subsampled by the same factor (nearest, as nnU-Net does). With one
    output this is the plain loss.
    """
    weights = [0.5**level for level in range(len(outputs))]
    total = sum(weights)
    loss = outputs[0].new_zeros((), dtype=torch.float32)
    for level, (logits, weight) in enumerate(zip(outputs, weights, strict=True)):
        step = 2**level
        target = label[..., ::step, ::step, ::step]
        if target.shape[-3:] != logits.shape[-3:]:
            raise ValueError(
                f"deep-supervision output {level} is {tuple(logits.shape[-3:])}, "
                f"labels subsampled by {step} are {tuple(target.shape[-3:])}"
            )
        loss = loss + weight / total * loss_fn(logits.float(), target, supervision)
    return loss


def partial_label_loss(
    model: MultiTaskUNet,
    image: torch.Tensor,
    targets: Mapping[str, HeadTarget],
    loss_fn: MarginalLoss,
) -> torch.Tensor:
    """Forward ``image`` through each head of ``targets`` and sum their marginal losses.

    A head absent from ``targets`` is not run, so it gets no gradient; a class a case does not
    annotate is merged with background by the marginal loss rather than trained as absent.

    Raises
    ------
    ValueError
        If ``targets`` is empty.
    """
    if not targets:
        raise ValueError("a training step needs at least one supervised head")
    losses = [
        deep_supervision_loss(loss_fn, model.segment(image, head), t.label, t.supervision)
        for head, t in targets.items()
    ]
    return torch.stack(losses).sum()


@dataclass(frozen=True)
class StepSettings:
    """Mixed precision and gradient clipping of :func:`train_step`."""

    #: Run the forward pass under autocast on CUDA (with a gradient scaler).
    amp: bool = False
    #: Clip the global gradient norm of the optimiser's parameters to this; None: no clipping.
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")


def train_step(
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], torch.Tensor],
    settings: StepSettings = StepSettings(),
    scaler: torch.amp.GradScaler | None = None,
    device_type: str = "cpu",
) -> float:
    """Zero the gradients, compute the loss, back-propagate, clip, step; the loss's value.

    Parameters
    ----------
    optimizer
        Updates its parameters; only they are clipped.
    compute_loss
        Forward pass and loss of the step's batch (run under autocast when ``settings.amp``).
    settings
        Mixed precision and gradient clipping.
    scaler
        Gradient scaler of a mixed-precision run (kept across steps by the caller).
    device_type
        ``"cuda"`` or ``"cpu"``, for autocast.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type, enabled=settings.amp):
        loss = compute_loss()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if settings.grad_clip is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return float(loss.detach())
