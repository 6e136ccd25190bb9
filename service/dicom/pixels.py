"""Decode pixel data of planes (any supported transfer syntax) and apply the modality rescale."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.dicom.files import read_full
from service.dicom.planes import Plane
from service.errors import DicomInputError


def _decode(path: Path) -> np.ndarray:
    dataset = read_full(path)
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise DicomInputError(f"{path}: no pixel data (file truncated or not an image)")
    samples = _samples_per_pixel(dataset, path)
    if samples != 1:
        raise DicomInputError(
            f"{path}: {samples} samples per pixel; only greyscale images can form a volume"
        )
    try:
        pixels: np.ndarray = dataset.pixel_array
    except Exception as exc:  # decoders raise many types; the file name is what matters
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DicomInputError(
            f"{path}: pixel data could not be decoded (transfer syntax {syntax}): {exc}. "
            "Truncated files must be resent; compressed ones need the pylibjpeg plugins."
        ) from exc
    return pixels


def _samples_per_pixel(dataset: Dataset, path: Path) -> int:
    try:
        return int(dataset.get("SamplesPerPixel", 1))
    except Exception as exc:  # a damaged value raises on lazy conversion (length, type)
        raise DicomInputError(f"{path}: SamplesPerPixel is not a number ({exc})") from exc


def read_planes(planes: Sequence[Plane]) -> np.ndarray:
    """Read and rescale planes into a float32 array ``(i, j, k)`` in the given order."""
    first = planes[0]
    out = np.empty((first.columns, first.rows, len(planes)), dtype=np.float32)
    by_path: dict[Path, list[int]] = defaultdict(list)
    for k, plane in enumerate(planes):
        by_path[plane.path].append(k)
    for path, indices in by_path.items():
        pixels = _decode(path)
        for k in indices:
            plane = planes[k]
            frame = pixels if plane.frame_index is None else _frame(pixels, plane)
            if frame.shape != (plane.rows, plane.columns):
                raise DicomInputError(
                    f"{plane.label}: pixel array is {frame.shape}, header says "
                    f"{plane.rows}x{plane.columns}"
                )
            # pydicom gives (row, column); fedseg volumes are (i=column, j=row, k).
            values = frame.T.astype(np.float32)
            if plane.rescale_slope != 1.0 or plane.rescale_intercept != 0.0:
                values = values * np.float32(plane.rescale_slope) + np.float32(
                    plane.rescale_intercept
                )
            out[:, :, k] = values
    return out


def _frame(pixels: np.ndarray, plane: Plane) -> np.ndarray:
    assert plane.frame_index is not None
    if pixels.ndim == 2:
        if plane.frame_index != 0:
            raise DicomInputError(f"{plane.label}: file holds a single frame")
        return pixels
    if plane.frame_index >= pixels.shape[0]:
        raise DicomInputError(f"{plane.label}: file holds only {pixels.shape[0]} frames")
    frame: np.ndarray = pixels[plane.frame_index]
    return frame
