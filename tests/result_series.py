"""Synthetic source series in several geometries and a phantom label map, for writer tests.

Imported as ``from tests.result_series import ...``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from service.dicom.image_writer import PetAcquisition, SeriesSpec, write_series
from service.dicom.volume import Volume, read_volume

SHAPE = (24, 20, 6)
SPACING = (1.5, 2.0, 3.0)
# Row cosine, column cosine and slice direction for each patient setup.
GEOMETRIES: dict[str, tuple[str, np.ndarray]] = {
    "axial": ("HFS", np.eye(3)),
    "feet-first": ("FFS", np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]]).T),
    "prone": ("HFP", np.array([[-1.0, 0, 0], [0, -1, 0], [0, 0, 1]]).T),
}


def _oblique() -> np.ndarray:
    a, b = np.radians(20.0), np.radians(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


GEOMETRIES["oblique"] = ("HFS", _oblique())


def affine_for(geometry: str) -> np.ndarray:
    """Voxel→LPS affine of a geometry (columns: i, j, k directions times spacing)."""
    _, directions = GEOMETRIES[geometry]
    affine = np.eye(4)
    affine[:3, :3] = directions * np.asarray(SPACING)
    affine[:3, 3] = (-20.0, 35.0, 110.0)
    return affine


def phantom_labels() -> np.ndarray:
    """ct-organs-like labels: an asymmetric blob (1), two islands (2), a ring with a hole (3)."""
    labels = np.zeros(SHAPE, dtype=np.uint16)
    labels[2:9, 3:7, 1:4] = 1
    labels[2:4, 7:10, 1:4] = 1  # a hook that makes label 1 asymmetric: catches flips
    labels[12:15, 2:5, 2:5] = 2
    labels[18:22, 2:4, 2:5] = 2
    labels[12:21, 9:18, 1:5] = 3
    labels[15:18, 12:15, 1:5] = 0  # hole
    labels[16, 13, 2] = 3  # island inside the hole
    return labels


def _spec(modality: str, position: str) -> SeriesSpec:
    pet = None
    if modality == "PT":
        pet = PetAcquisition(
            injected_dose_bq=3.7e8,
            injection_datetime=datetime(2024, 1, 1, 9, 0),
            series_datetime=datetime(2024, 1, 1, 10, 0),
            patient_weight_kg=70.0,
        )
    return SeriesSpec(
        modality=modality,
        patient_position=position,
        pet=pet,
        accession_number="ACC1",
        study_description="phantom study",
    )


def write_phantom_series(out: Path, modality: str, geometry: str) -> Volume:
    """Write the phantom series of ``modality`` in ``geometry`` to ``out`` and read it back."""
    position, _ = GEOMETRIES[geometry]
    rng = np.random.default_rng(0)
    values = rng.normal(100.0 if modality != "PT" else 5000.0, 10.0, SHAPE)
    values[phantom_labels() > 0] += 50.0
    write_series(out, values.astype(np.float32), affine_for(geometry), _spec(modality, position))
    return read_volume(out)
