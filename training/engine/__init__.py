"""Training loop, checkpoints, seeding and sliding-window inference."""

from training.engine.checkpoint import load_model, save_checkpoint
from training.engine.config import TrainConfig
from training.engine.inference import predict_labels
from training.engine.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_model", "predict_labels", "save_checkpoint", "train"]
