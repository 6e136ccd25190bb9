"""The training loop: patches in, validated and checkpointed model out.

Local and centralised training are the same loop; a centralised run simply pools the cases of
several sites. Validation runs every ``validate_every`` steps on whole volumes, and the model with
the best mean validation Dice is kept as ``best.pt``; ``last.pt`` holds everything needed to
resume.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.data.pipeline import as_items, patch_loader
from training.data.preprocess import Prepared
from training.engine.checkpoint import read_checkpoint, save_checkpoint
from training.engine.config import TrainConfig
from training.engine.inference import predict_labels
from training.engine.step import HeadTarget, StepSettings, partial_label_loss, train_step
from training.losses import LabelSupervision, MarginalLoss
from training.metrics import dice
from training.models import MultiTaskUNet
from training.tasks import Task

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run achieved and where it left its files."""

    best_dice: float
    best_step: int
    steps: int
    seconds: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batches(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def validation_dice(
    model: MultiTaskUNet, task: Task, cases: Sequence[Prepared], device: torch.device
) -> float:
    """Mean Dice over cases and labels present in each case's truth (or predicted)."""
    scores = []
    for case in cases:
        assert case.labels is not None
        pred = predict_labels(model, case.image, task.name.value, task.patch_size, device)
        for value in task.labels:
            if (case.labels == value).any() or (pred == value).any():
                scores.append(dice(pred == value, case.labels == value))
    return float(np.mean(scores)) if scores else 0.0


def _supervision(mask: torch.Tensor) -> list[LabelSupervision]:
    return [LabelSupervision.of(torch.nonzero(row).flatten().tolist()) for row in mask]


def train(
    model: MultiTaskUNet,
    task: Task,
    train_cases: Sequence[Prepared],
    val_cases: Sequence[Prepared],
    config: TrainConfig,
    out_dir: Path,
    annotated: Sequence[np.ndarray] | None = None,
) -> TrainResult:
    """Train ``model``'s ``task`` head; resumes from ``out_dir/last.pt`` when it exists.

    ``annotated`` holds one boolean vector per training case over the task's classes (index 0
    unused); by default every label is annotated.
    """
    device = resolve_device(config.device)
    head = task.name.value
    if annotated is None:
        full = np.ones(task.num_classes, dtype=bool)
        full[0] = False
        annotated = [full] * len(train_cases)
    loader = patch_loader(
        as_items(train_cases, annotated),
        task,
        config.batch_size,
        config.foreground_ratio,
        config.seed,
        config.flip_prob,
    )
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (1 - min(s, config.steps - 1) / config.steps) ** 0.9
    )
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step_settings = StepSettings(amp=use_amp, grad_clip=config.grad_clip)
    loss_fn = MarginalLoss(task.num_classes, dice_weight=config.dice_weight)
    result = TrainResult(best_dice=-1.0, best_step=0, steps=0, seconds=0.0, device=str(device))
    last = out_dir / "last.pt"
    if last.exists():
        state = read_checkpoint(last)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        result = TrainResult(**state["result"])
        logger.info("resuming from step %d", result.steps)
    batches = _batches(loader)
    # Skip the batches already used so a resumed run sees the same patch sequence.
    for _ in range(result.steps):
        next(batches)
    started = time.perf_counter() - result.seconds
    bar = tqdm(total=config.steps, initial=result.steps, disable=not config.progress, unit="step")
    model.train()
    while result.steps < config.steps:
        batch = next(batches)
        image = batch["image"].to(device)
        target = HeadTarget(batch["label"].to(device), _supervision(batch["annotated"]))
        loss = train_step(
            optimizer,
            partial(partial_label_loss, model, image, {head: target}, loss_fn),
            step_settings,
            scaler,
            device.type,
        )
        scheduler.step()
        result.steps += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", val_dice=f"{max(result.best_dice, 0):.3f}")
        if result.steps % config.validate_every == 0 or result.steps == config.steps:
            _validate(model, task, val_cases or train_cases, device, result, out_dir, loss)
            result.seconds = time.perf_counter() - started
            save_checkpoint(
                last,
                model,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(),
                result=result.__dict__,
                train_config=config.as_dict(),
                task=head,
                labels=list(task.label_names),
            )
    bar.close()
    result.seconds = time.perf_counter() - started
    (out_dir / "result.json").write_text(json.dumps(result.__dict__, indent=2))
    return result


def _validate(
    model: MultiTaskUNet,
    task: Task,
    cases: Sequence[Prepared],
    device: torch.device,
    result: TrainResult,
    out_dir: Path,
    loss: float,
) -> None:
    score = validation_dice(model, task, cases, device)
    result.history.append({"step": float(result.steps), "loss": loss, "val_dice": score})
    logger.info("step %d loss %.4f validation Dice %.4f", result.steps, loss, score)
    if score > result.best_dice:
        result.best_dice, result.best_step = score, result.steps
        save_checkpoint(
            out_dir / "best.pt",
            model,
            task=task.name.value,
            labels=list(task.label_names),
            val_dice=score,
        )
    model.train()
