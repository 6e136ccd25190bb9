"""The one DICOM reader of fedseg: series → volumes with a voxel→patient affine.

Training, inference, evaluation and every CLI tool read images through :func:`load_volumes`, so
they can never disagree about a voxel. See :mod:`service.dicom.geometry` for the axis
convention.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from service.config import GeometryPolicy, Settings, get_settings
from service.dicom.files import DicomFile, scan
from service.dicom.geometry import (
    StackGeometry,
    axis_codes,
    measure,
    regular_grid,
    regularise,
    voxel_spacing,
)
from service.dicom.pixels import read_planes
from service.dicom.planes import Plane, collect_planes, derived_study_uid
from service.dicom.stacks import Stack, group_series, split_stacks
from service.errors import DicomGeometryError, DicomInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceRef:
    """A source image plane that a volume was built from."""

    sop_instance_uid: str
    sop_class_uid: str
    frame_number: int | None  # 1-based frame of a multi-frame instance, else None
    position: tuple[float, float, float]
    path: Path


@dataclass(frozen=True)
class VolumePlan:
    """What one stack will become, known from headers alone (before pixels are decoded)."""

    stack: Stack
    geometry: StackGeometry
    shape: tuple[int, int, int]
    affine: np.ndarray
    regularise: bool
    warnings: tuple[str, ...]
    error: str | None  # why the stack cannot become a volume, or None

    @property
    def header(self) -> Dataset:
        """Header of the stack's first plane."""
        return self.stack.planes[0].dataset

    @property
    def modality(self) -> str:
        """Modality of the stack."""
        return self.stack.planes[0].modality

    @property
    def slices(self) -> tuple[SliceRef, ...]:
        """The stack's source planes, in order (plane ``k`` of the grid unless regularised)."""
        return tuple(_slice_ref(p) for p in self.stack.planes)

    def describe(self) -> dict[str, object]:
        """Plain-data summary for ``fedseg inspect`` (no patient identifiers)."""
        return {
            "modality": self.modality,
            "series_instance_uid": self.stack.series_instance_uid,
            "series_number": _int_or_none(self.header.get("SeriesNumber")),
            "series_description": str(self.header.get("SeriesDescription", "")),
            "stack": self.stack.label,
            "slices": len(self.stack.planes),
            "shape": list(self.shape),
            "spacing_mm": [round(s, 4) for s in voxel_spacing(self.affine)],
            "orientation": axis_codes(self.affine),
            "regularised": self.regularise,
            "warnings": list(self.warnings),
            "error": self.error,
        }


@dataclass
class Volume:
    """An image volume on a regular grid.

    ``array[i, j, k]`` holds rescaled values (HU, Bq/mL, SUV, MR units) as float32, and
    ``affine`` maps ``(i, j, k, 1)`` to patient LPS mm. When ``on_source_grid`` is true, plane
    ``k`` is ``slices[k]``; otherwise the stack was resampled (gantry tilt, uneven spacing) and
    ``slices`` lists the source planes for referencing only.
    """

    array: np.ndarray
    affine: np.ndarray
    modality: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    series_description: str
    stack_label: str
    slices: tuple[SliceRef, ...]
    headers: tuple[Dataset, ...]
    on_source_grid: bool = True
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts along i, j, k."""
        i, j, k = self.array.shape
        return (int(i), int(j), int(k))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along i, j, k, mm."""
        return voxel_spacing(self.affine)

    @property
    def orientation(self) -> str:
        """Axis codes of i, j, k in patient space, e.g. ``"LPS"``."""
        return axis_codes(self.affine)

    @property
    def header(self) -> Dataset:
        """Header of the first source plane (study, patient and series attributes)."""
        return self.headers[0]


@dataclass
class Discovery:
    """Everything found under some paths: volume plans, other objects and skipped files."""

    plans: list[VolumePlan]
    non_image: list[DicomFile]
    skipped: list[Path]
    warnings: list[str]


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _too_large(stack: Stack, limit: int, name: str) -> str | None:
    """Why one file of ``stack`` is too large to decode (16-bit pixels), or None.

    A few kilobytes of RLE can declare 65535 x 65535 pixels or thousands of frames; decoding
    them would exhaust memory (issue 17, item 3). Intake refuses such instances; this bounds
    files read from a folder the same way, from the headers alone.
    """
    frames: dict[Path, int] = {}
    for plane in stack.planes:
        frames[plane.path] = frames.get(plane.path, 0) + 1
    path, count = max(frames.items(), key=lambda item: item[1])
    first = stack.planes[0]
    size = 2 * first.rows * first.columns * count
    if size <= limit:
        return None
    return (
        f"{name}: {path.name} holds {count} plane(s) of {first.rows} x {first.columns} "
        f"pixels, {size} bytes decoded, more than the {limit}-byte limit for one instance; "
        "raise FEDSEG_MAX_DECODED_INSTANCE_BYTES if such images are expected"
    )


def plan_stack(stack: Stack, settings: Settings) -> VolumePlan:
    """Check a stack's geometry and decide how it becomes a volume."""
    geometry = measure(stack)
    warnings = sorted({w for p in stack.planes for w in p.warnings})
    name = f"series {stack.series_instance_uid}" + (f" [{stack.label}]" if stack.label else "")
    error: str | None = None
    regular = True
    shape = (stack.planes[0].columns, stack.planes[0].rows, len(stack.planes))
    error = _too_large(stack, settings.max_decoded_instance_bytes, name)
    gaps = geometry.missing_slice_gaps()
    deviation = geometry.grid_deviation()
    if gaps.size:
        where = ", ".join(
            f"after {stack.planes[k].label} ({geometry.normal_steps[k]:.2f} mm step, "
            f"expected {geometry.median_step:.2f})"
            for k in gaps[:3]
        )
        error = error or (
            f"{name}: {int(gaps.size)} gap(s) look like missing slices: {where}. "
            "Resend the complete series."
        )
    elif deviation > settings.slice_position_tolerance * geometry.median_step:
        steps = np.unique(np.round(geometry.normal_steps, 2))
        shown = ", ".join(f"{s:g}" for s in steps)
        warnings.append(f"uneven slice spacing ({shown} mm along the slice normal)")
        regular = False
    elif deviation > 0.01:
        warnings.append(f"slice positions deviate up to {deviation:.2f} mm from a regular grid")
    if geometry.is_tilted:
        warnings.append(f"gantry tilt {geometry.tilt_degrees:.1f} degrees")
        regular = False
    if any(step <= 0 for step in geometry.normal_steps):
        error = error or f"{name}: two planes share one position after stack splitting"
    affine = geometry.affine()
    if not regular and error is None:
        if settings.geometry_policy is GeometryPolicy.STRICT:
            error = f"{name}: irregular geometry ({'; '.join(warnings)}) and policy is strict"
        else:
            warnings.append(f"resampled onto a regular grid at {geometry.median_step:.2f} mm")
            shape, affine = regular_grid(geometry, shape[0], shape[1])
    return VolumePlan(
        stack=stack,
        geometry=geometry,
        shape=shape,
        affine=affine,
        regularise=not regular and error is None,
        warnings=tuple(warnings),
        error=error,
    )


def discover(paths: Sequence[Path | str], settings: Settings | None = None) -> Discovery:
    """Find every volume under ``paths`` from headers alone."""
    settings = settings or get_settings()
    scanned = scan(paths)
    planes = collect_planes(scanned.files)
    if not planes.planes and not planes.non_image:
        shown = ", ".join(str(p) for p in scanned.skipped[:3])
        raise DicomInputError(
            f"no DICOM files found in {', '.join(str(p) for p in paths)}"
            + (f" ({len(scanned.skipped)} other files skipped, e.g. {shown})" if shown else "")
        )
    plans = []
    for series_uid, series_planes in group_series(planes.planes).items():
        for stack in split_stacks(series_uid, series_planes):
            plans.append(plan_stack(stack, settings))
    return Discovery(
        plans=plans, non_image=planes.non_image, skipped=scanned.skipped, warnings=planes.warnings
    )


def _slice_ref(plane: Plane) -> SliceRef:
    return SliceRef(
        sop_instance_uid=plane.sop_instance_uid,
        sop_class_uid=str(plane.dataset.get("SOPClassUID", "")),
        frame_number=None if plane.frame_index is None else plane.frame_index + 1,
        position=(float(plane.position[0]), float(plane.position[1]), float(plane.position[2])),
        path=plane.path,
    )


def load_volume(plan: VolumePlan) -> Volume:
    """Decode a planned stack into a :class:`Volume`."""
    if plan.error:
        raise DicomGeometryError(plan.error)
    planes = plan.stack.planes
    array = read_planes(planes)
    affine = plan.affine
    if plan.regularise:
        array, affine = regularise(array, plan.geometry, fill=float(array.min()))
    header = plan.header
    # planes._identity writes a derived StudyInstanceUID into a blank header, so one is always here.
    study_uid = str(header.get("StudyInstanceUID", "")).strip() or derived_study_uid(header)
    return Volume(
        array=array,
        affine=affine,
        modality=plan.modality,
        series_instance_uid=plan.stack.series_instance_uid,
        study_instance_uid=study_uid,
        frame_of_reference_uid=str(header.get("FrameOfReferenceUID", "")).strip(),
        series_description=str(header.get("SeriesDescription", "")),
        stack_label=plan.stack.label,
        slices=plan.slices,
        headers=tuple(p.dataset for p in planes),
        on_source_grid=not plan.regularise,
        warnings=plan.warnings,
    )


def load_volumes(
    paths: Sequence[Path | str] | Path | str,
    settings: Settings | None = None,
    modality: str | None = None,
) -> list[Volume]:
    """Read every volume under ``paths`` (files or folders), optionally of one modality.

    Raises
    ------
    DicomInputError
        If nothing readable is found, or a stack cannot be read; the message names the file or
        series and the problem.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    found = discover(paths, settings)
    plans = [p for p in found.plans if modality is None or p.modality == modality]
    if not plans:
        kinds = sorted({p.modality for p in found.plans}) or ["none"]
        raise DicomInputError(
            f"no {modality or 'image'} volume in {', '.join(str(p) for p in paths)} "
            f"(image modalities found: {', '.join(kinds)})"
        )
    volumes = []
    for plan in plans:
        volume = load_volume(plan)
        for warning in volume.warnings:
            logger.warning("series %s: %s", volume.series_instance_uid, warning)
        volumes.append(volume)
    return volumes


def read_volume(
    paths: Sequence[Path | str] | Path | str,
    settings: Settings | None = None,
    modality: str | None = None,
) -> Volume:
    """Read exactly one volume; refuse input that holds several (name them in the error)."""
    volumes = load_volumes(paths, settings, modality)
    if len(volumes) > 1:
        listed = "; ".join(
            f"{v.modality} {v.series_instance_uid} {v.stack_label}".strip() for v in volumes[:5]
        )
        raise DicomInputError(
            f"{paths}: expected one volume, found {len(volumes)} ({listed}); "
            "pass a folder holding one series"
        )
    return volumes[0]
