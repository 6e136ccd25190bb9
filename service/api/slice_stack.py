"""What the dashboard's slice viewer shows: a series' values and its SEG as label planes.

A job's SEG is read back onto the grid of the series it was made on (the received instances in
the store), so the overlay the viewer draws is the delivered DICOM result, not a private copy.
The image planes carry values, not grey levels: HU for CT, SUV of the type the job measured for
PET (the very numbers it measured, from :func:`service.results.measurements.measured_values`),
the stored values otherwise, so the page windows them itself and reads the value under the
cursor. Each stack is built once and kept in a small per-app cache (on ``app.state``, not a
global), bounded by count and by bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from service.api.plane_orientation import PlaneLayout, plane_layout
from service.api.window_presets import WindowPreset, window_presets
from service.config import Settings
from service.dicom.volume import Volume, read_volume
from service.errors import DicomInputError, SuvError
from service.masks.seg_reader import read_seg
from service.pet.body_size import SuvType
from service.regions import RegionSet
from service.results.measurements import measured_values

#: Label planes hold segment numbers as 16-bit values: DICOM's SegmentNumber is a US.
LABEL_DTYPE = np.dtype("<u2")
#: Value planes are 16-bit integers when every value is one (CT in HU), else 32-bit floats.
VALUE_DTYPES = (np.dtype("<i2"), np.dtype("<f4"))


@dataclass(frozen=True)
class Segment:
    """One segment of the overlay: its number in the label planes and its name."""

    number: int
    name: str


@dataclass(frozen=True)
class SliceStack:
    """Display planes of one series: values in ``unit`` and segment numbers, both ``[i, j, k]``.

    ``unit`` is ``HU``, ``SUV<type>`` (``SUVbw``...), a PET Units term when the series could not
    be converted to SUV (``notes`` says why), or empty for values without a physical unit (MR).
    """

    series_instance_uid: str
    modality: str
    values: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    unit: str
    segments: tuple[Segment, ...]
    presets: tuple[WindowPreset, ...]
    layout: PlaneLayout
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.values.shape != self.labels.shape:
            raise ValueError(
                f"values {self.values.shape} and labels {self.labels.shape} must be equal 3-D grids"
            )
        if self.values.dtype not in VALUE_DTYPES or self.labels.dtype != LABEL_DTYPE:
            raise ValueError("value planes are int16 or float32, label planes uint16")

    @property
    def slices(self) -> int:
        """Number of planes."""
        return int(self.values.shape[2])

    @property
    def nbytes(self) -> int:
        """Memory the stack's planes take."""
        return int(self.values.nbytes + self.labels.nbytes)

    def busiest_slice(self) -> int:
        """The plane with the most segmented pixels (the middle one when there are none)."""
        counts = np.count_nonzero(self.labels, axis=(0, 1))
        return int(np.argmax(counts)) if counts.any() else self.slices // 2

    def plane(self, which: str, k: int) -> np.ndarray:
        """Plane ``k`` of ``values`` or ``labels`` as DICOM (rows, columns), little-endian."""
        if not 0 <= k < self.slices:
            raise IndexError(f"slice {k} outside 0..{self.slices - 1}")
        source = self.values if which == "values" else self.labels
        return np.ascontiguousarray(source[:, :, k].T)


def compact_values(values: np.ndarray) -> np.ndarray:
    """``values`` as int16 when that is exact (CT in HU, most MR), else as float32."""
    if (
        values.size
        and float(values.min()) >= -32768
        and float(values.max()) <= 32767
        # plane by plane: no second full-size copy of a big CT
        and all(np.array_equal(plane, np.rint(plane)) for plane in np.moveaxis(values, 2, 0))
    ):
        return values.astype(VALUE_DTYPES[0])
    return values.astype(VALUE_DTYPES[1])


def label_planes(regions: RegionSet) -> np.ndarray:
    """Each voxel's segment number (0 = none; where segments overlap, the later one)."""
    labels = np.zeros(regions.shape, dtype=LABEL_DTYPE)
    for region in regions:
        if region.number > np.iinfo(LABEL_DTYPE).max:
            raise ValueError(f"segment number {region.number} exceeds a SEG's 16-bit range")
        labels[region.mask] = region.number
    return labels


def display_values(volume: Volume, suv_type: SuvType) -> tuple[np.ndarray, str, tuple[str, ...]]:
    """The values the viewer shows for ``volume``, their unit and any note on them."""
    if volume.modality == "PT":
        try:
            measured = measured_values(volume, suv_type)
        except SuvError as exc:
            units = str(volume.header.get("Units", "")).strip()
            return volume.array, units, (f"values are not shown in SUV: {exc}",)
        return measured.array, f"SUV{suv_type.value}", ()
    return volume.array, "HU" if volume.modality == "CT" else "", ()


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


def build_stack(
    image_paths: Sequence[Path],
    seg_path: Path,
    settings: Settings,
    suv_type: SuvType = SuvType.BW,
) -> SliceStack:
    """Read the image series in its display unit and place the SEG's segments on its grid."""
    volume = read_volume(list(image_paths), settings)
    regions = read_seg(seg_path, volume)
    values, unit, notes = display_values(volume, suv_type)
    return SliceStack(
        series_instance_uid=volume.series_instance_uid,
        modality=volume.modality,
        values=compact_values(values),
        labels=label_planes(regions),
        affine=np.array(volume.affine, dtype=np.float64),
        unit=unit,
        segments=tuple(Segment(r.number, r.name) for r in regions),
        presets=window_presets(volume.modality, unit, values),
        layout=plane_layout(volume.affine, volume.shape[2]),
        notes=notes,
    )


class StackCache:
    """The last stacks built, keyed by (job, layer); thread-safe, least recent evicted.

    It keeps at most ``capacity`` stacks and, beyond the newest one, at most ``max_bytes``.
    """

    def __init__(self, capacity: int = 4, max_bytes: int = 1 << 30) -> None:
        if capacity < 1:
            raise ValueError("the viewer cache holds at least one stack")
        self.capacity = capacity
        self.max_bytes = max_bytes
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
            self._items.move_to_end(key)
            while len(self._items) > 1 and (
                len(self._items) > self.capacity
                or sum(s.nbytes for s in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return stack

    def drop(self, job_id: str) -> None:
        """Forget every stack of a job (its results were purged)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == job_id]:
                del self._items[key]
