"""What the dashboard's slice viewer shows: a windowed image series and its SEG as label planes.

A job's SEG is read back onto the grid of the series it was made on (the received instances in
the store), so the overlay the viewer draws is the delivered DICOM result, not a private copy.
Each stack is built once and kept in a small per-app cache (on ``app.state``, not a global).
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from service.config import Settings
from service.dicom.volume import Volume, read_volume
from service.errors import DicomInputError
from service.masks.seg_reader import read_seg

#: CT soft-tissue window (level 40 HU, width 400 HU).
CT_WINDOW = (-160.0, 240.0)
#: Other modalities are windowed from 0 to this percentile of the series.
UPPER_PERCENTILE = 99.5


@dataclass(frozen=True)
class Segment:
    """One segment of the overlay: its number in the label planes and its name."""

    number: int
    name: str


@dataclass(frozen=True)
class SliceStack:
    """Display planes of one series: 8-bit image and label values, both ``[i, j, k]``."""

    series_instance_uid: str
    modality: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape != self.labels.shape:
            raise ValueError(
                f"image {self.image.shape} and labels {self.labels.shape} must be equal 3-D grids"
            )
        if self.image.dtype != np.uint8 or self.labels.dtype != np.uint8:
            raise ValueError("display planes are 8-bit")

    @property
    def slices(self) -> int:
        """Number of planes."""
        return int(self.image.shape[2])

    def busiest_slice(self) -> int:
        """The plane with the most segmented pixels (the middle one when there are none)."""
        counts = np.count_nonzero(self.labels, axis=(0, 1))
        return int(np.argmax(counts)) if counts.any() else self.slices // 2

    def plane(self, which: str, k: int) -> np.ndarray:
        """Plane ``k`` of ``image`` or ``labels`` as DICOM (rows, columns)."""
        if not 0 <= k < self.slices:
            raise IndexError(f"slice {k} outside 0..{self.slices - 1}")
        source = self.image if which == "image" else self.labels
        return np.ascontiguousarray(source[:, :, k].T)


def window(volume: Volume) -> np.ndarray:
    """The volume as 8-bit grey levels (CT soft-tissue window; else 0 to a high percentile)."""
    values = volume.array
    if volume.modality.upper() == "CT":
        low, high = CT_WINDOW
    else:
        low, high = 0.0, float(np.percentile(values, UPPER_PERCENTILE))
    scaled = (values - low) / max(high - low, 1e-6)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SegSource:
    """The images a SEG was made on: its patient, study, series and instances."""

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: frozenset[str]


def seg_source(seg_path: Path) -> SegSource:
    """The patient, study, series and instances a SEG says it was made on.

    Raises
    ------
    DicomInputError
        If the SEG names no referenced series, or no instances in it.
    """
    ds = pydicom.dcmread(seg_path, stop_before_pixels=True)
    for item in ds.get("ReferencedSeriesSequence", []):
        series = str(item.get("SeriesInstanceUID", ""))
        instances = frozenset(
            str(ref.get("ReferencedSOPInstanceUID", ""))
            for ref in item.get("ReferencedInstanceSequence", [])
        ) - {""}
        if series and instances:
            study = str(ds.get("StudyInstanceUID", ""))
            return SegSource(str(ds.get("PatientID", "") or ""), study, series, instances)
    raise DicomInputError(
        f"{seg_path.name}: SEG names no referenced series and instances; cannot view"
    )


def build_stack(image_paths: Sequence[Path], seg_path: Path, settings: Settings) -> SliceStack:
    """Read the image series and place the SEG's segments on its grid as label values."""
    volume = read_volume(list(image_paths), settings)
    regions = read_seg(seg_path, volume)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for region in regions:
        labels[region.mask] = min(region.number, 255)
    segments = tuple(Segment(r.number, r.name) for r in regions)
    spacing = tuple(float(s) for s in volume.spacing)
    return SliceStack(
        series_instance_uid=volume.series_instance_uid,
        modality=volume.modality,
        image=window(volume),
        labels=labels,
        spacing=(spacing[0], spacing[1], spacing[2]),
        segments=segments,
    )


class StackCache:
    """The last few stacks built, keyed by (job, layer); thread-safe, least recent evicted."""

    def __init__(self, capacity: int = 4) -> None:
        if capacity < 1:
            raise ValueError("the viewer cache holds at least one stack")
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, int], SliceStack] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int], build: Callable[[], SliceStack]) -> SliceStack:
        """The cached stack for ``key``, built (outside the lock) when missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        stack = build()
        with self._lock:
            self._items[key] = stack
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return stack

    def drop(self, job_id: str) -> None:
        """Forget every stack of a job (its results were purged)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == job_id]:
                del self._items[key]


def encode_png(plane: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a (rows, columns) plane (no dependency beyond zlib)."""
    if plane.ndim != 2 or plane.dtype != np.uint8:
        raise ValueError("encode_png takes a 2-D uint8 plane")
    rows, columns = plane.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", columns, rows, 8, 0, 0, 0, 0)
    # Filter type 0 (none) before every row.
    raw = np.hstack([np.zeros((rows, 1), np.uint8), plane]).tobytes()
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
