"""Training's evaluation predicts exactly as the service's engine blends windows."""

from __future__ import annotations

import numpy as np
import torch

from service.inference.sliding_window import SlidingWindowConfig, sliding_window
from training.engine import predict_labels
from training.models import ModelConfig, build_model


def test_predict_labels_equals_the_service_sliding_window() -> None:
    model = build_model(ModelConfig(heads={"t": 3}, filters=(4, 8)), seed=0).eval()
    image = np.random.default_rng(0).normal(size=(40, 36, 28)).astype(np.float32)
    patch = (16, 16, 16)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch), "t").numpy()

    logits = sliding_window(image[None], predict, SlidingWindowConfig(patch_size=patch))
    ours = predict_labels(model, image, "t", patch)
    # Ties aside, the labels are the service's arg-max; uniform blending differs at many voxels.
    top2 = np.sort(logits, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-4
    assert clear.mean() > 0.99
    assert np.array_equal(ours[clear], np.argmax(logits, axis=0)[clear])
