"""Checkpoints: model weights with their architecture, plus optimizer state for resuming."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from service.errors import ModelBundleError
from training.models import ModelConfig, MultiTaskUNet


def save_checkpoint(path: Path, model: MultiTaskUNet, **state: Any) -> Path:
    """Write model config and weights (and any extra resumable ``state``) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model_config": model.config.as_dict(), "model": model.state_dict(), **state}
    partial = path.with_suffix(path.suffix + ".part")
    torch.save(payload, partial)
    partial.replace(path)
    return path


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint's dict on the CPU.

    Raises
    ------
    ModelBundleError
        If the file is missing or not a fedseg checkpoint.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError as exc:
        raise ModelBundleError(f"{path}: no such checkpoint") from exc
    except Exception as exc:  # torch raises several types for damaged files
        raise ModelBundleError(f"{path}: not a readable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or "model_config" not in payload or "model" not in payload:
        raise ModelBundleError(f"{path}: not a fedseg checkpoint (no model_config/model)")
    return payload


def load_model(path: Path) -> tuple[MultiTaskUNet, dict[str, Any]]:
    """Rebuild the model of a checkpoint; returns it (eval mode) and the whole checkpoint."""
    payload = read_checkpoint(path)
    model = MultiTaskUNet(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    model.eval()
    return model, payload
