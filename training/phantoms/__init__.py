"""Synthetic multi-site CT/PET/MR phantoms written as real DICOM with ground truth.

numpy only (no torch), deterministic by seed; see :func:`generate_dataset` and
:func:`make_case`.
"""

from training.phantoms.cases import PhantomCase, make_case
from training.phantoms.config import CT_ORGANS, PhantomConfig, PhantomModality, Size
from training.phantoms.dataset import DatasetIndex, generate_dataset

__all__ = [
    "CT_ORGANS",
    "DatasetIndex",
    "PhantomCase",
    "PhantomConfig",
    "PhantomModality",
    "Size",
    "generate_dataset",
    "make_case",
]
