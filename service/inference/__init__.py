"""Torch-free inference: model bundles, onnxruntime sessions and sliding-window prediction."""
