"""Networks: a 3D U-Net split into a shared encoder and per-task heads."""

from training.models.unet import SHARED_GROUP, ModelConfig, MultiTaskUNet, build_model, task_group

__all__ = ["SHARED_GROUP", "ModelConfig", "MultiTaskUNet", "build_model", "task_group"]
