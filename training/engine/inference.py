"""Sliding-window prediction of a whole prepared volume."""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from service.imaging.resample import Grid, resample_labels
from service.inference.sliding_window import SlidingWindowConfig
from training.data.preprocess import prepare
from training.models import MultiTaskUNet
from training.tasks import Task


@torch.no_grad()
def predict_labels(
    model: MultiTaskUNet,
    image: np.ndarray,
    task: str,
    patch_size: tuple[int, int, int],
    device: torch.device | None = None,
) -> np.ndarray:
    """Arg-max labels of a normalised image on its own grid (``[i, j, k]``)."""
    device = device or torch.device("cpu")
    was_training = model.training
    model.eval()
    # The same windows, padding and Gaussian blending as the service's onnxruntime engine
    # (tests/training/test_sliding_window_parity.py), so evaluation scores what will be served.
    x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None].to(device)
    logits = sliding_window_inference(
        x,
        roi_size=patch_size,
        sw_batch_size=2,
        predictor=lambda t: model(t, task),
        overlap=0.5,
        mode="gaussian",
        sigma_scale=SlidingWindowConfig.sigma_scale,
    )
    model.train(was_training)
    assert isinstance(logits, torch.Tensor)
    labels = torch.argmax(logits, dim=1)[0].cpu().numpy()
    return np.asarray(labels, dtype=np.int16)


def predict_on_source_grid(
    model: MultiTaskUNet,
    task: Task,
    image: np.ndarray,
    affine: np.ndarray,
    device: torch.device | None = None,
) -> np.ndarray:
    """Labels of a raw image (HU, SUV, MR units) on its own grid, via the task's grid."""
    prepared = prepare(image, affine, None, task)
    labels = predict_labels(model, prepared.image, task.name.value, task.patch_size, device)
    source = Grid(shape=(image.shape[0], image.shape[1], image.shape[2]), affine=affine)
    return resample_labels(labels, prepared.grid, source)
