"""Group planes into series and split each series into stacks that form one volume each.

A series may hold several stacks: different orientations (localisers), different image sizes,
or repeated positions (dynamic phases, echoes, bed overlaps). Each becomes its own volume; a
stack is ordered along its slice normal.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.dicom.planes import Plane
from service.errors import DicomInputError

# Attributes that tell repeated-position stacks apart, tried in this order.
_SPLIT_ATTRIBUTES = (
    "StackID",
    "EchoNumbers",
    "TemporalPositionIndex",
    "TemporalPositionIdentifier",
    "TriggerTime",
    "AcquisitionNumber",
    "ImageType",
)
_ORIENTATION_DECIMALS = 3  # cosines equal to 1e-3 are the same orientation
_POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class Stack:
    """Planes of one series that share orientation and size, ordered along the slice normal."""

    series_instance_uid: str
    planes: tuple[Plane, ...]
    label: str  # distinguishes stacks of one series ("" when the series has one stack)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal shared by the stack's planes."""
        return self.planes[0].normal

    @property
    def distances(self) -> np.ndarray:
        """Position of each plane along the slice normal, mm."""
        return np.array([float(p.position @ self.normal) for p in self.planes])


def group_series(planes: Sequence[Plane]) -> dict[str, list[Plane]]:
    """Group planes by SeriesInstanceUID, keeping first-seen order."""
    series: dict[str, list[Plane]] = defaultdict(list)
    for plane in planes:
        series[plane.series_instance_uid].append(plane)
    return dict(series)


def _geometry_key(plane: Plane) -> tuple[object, ...]:
    return (
        tuple(np.round(plane.orientation, _ORIENTATION_DECIMALS) + 0.0),
        plane.rows,
        plane.columns,
        tuple(round(s, 4) for s in plane.pixel_spacing),
    )


def _has_repeats(planes: Sequence[Plane]) -> bool:
    normal = planes[0].normal
    distances = np.sort([float(p.position @ normal) for p in planes])
    return bool(np.any(np.diff(distances) < _POSITION_TOLERANCE_MM))


def _split_repeats(planes: list[Plane]) -> list[tuple[str, list[Plane]]]:
    """Split planes with repeated positions by the first attribute that makes positions unique."""
    for attribute in _SPLIT_ATTRIBUTES:
        groups: dict[object, list[Plane]] = defaultdict(list)
        for plane in planes:
            groups[plane.split_keys.get(attribute)].append(plane)
        if len(groups) > 1 and not any(_has_repeats(g) for g in groups.values()):
            return [(f"{attribute}={value}", g) for value, g in groups.items()]
    # Nothing tells them apart: the n-th plane at each position goes to stack n.
    by_position: dict[float, list[Plane]] = defaultdict(list)
    normal = planes[0].normal
    for plane in sorted(planes, key=lambda p: (p.instance_number, str(p.path))):
        key = round(float(plane.position @ normal) / _POSITION_TOLERANCE_MM)
        by_position[key].append(plane)
    depth = max(len(v) for v in by_position.values())
    return [
        (f"repeat={n + 1}", [v[n] for v in by_position.values() if len(v) > n])
        for n in range(depth)
    ]


def _check_mixed_sizes(series_uid: str, groups: dict[tuple[object, ...], list[Plane]]) -> None:
    """Refuse planes whose size differs from the other planes interleaved with them."""
    by_orientation: dict[object, list[list[Plane]]] = defaultdict(list)
    for key, planes in groups.items():
        by_orientation[key[0]].append(planes)
    for stacks in by_orientation.values():
        if len(stacks) < 2:
            continue
        stacks = sorted(stacks, key=len, reverse=True)
        main = stacks[0]
        normal = main[0].normal
        main_d = [float(p.position @ normal) for p in main]
        lo, hi = min(main_d), max(main_d)
        for odd in stacks[1:]:
            inside = [p for p in odd if lo < float(p.position @ normal) < hi]
            if inside:
                names = ", ".join(p.label for p in inside[:3])
                raise DicomInputError(
                    f"series {series_uid}: {len(inside)} slice(s) of size "
                    f"{inside[0].rows}x{inside[0].columns} (pixel spacing "
                    f"{inside[0].pixel_spacing}) lie among {len(main)} slices of size "
                    f"{main[0].rows}x{main[0].columns}: {names}. Remove the odd slices or "
                    "resend the series."
                )


def split_stacks(series_uid: str, planes: Sequence[Plane]) -> list[Stack]:
    """Split one series into stacks and order each along its slice normal."""
    groups: dict[tuple[object, ...], list[Plane]] = defaultdict(list)
    for plane in planes:
        groups[_geometry_key(plane)].append(plane)
    _check_mixed_sizes(series_uid, groups)
    labelled: list[tuple[str, list[Plane]]] = []
    for index, group in enumerate(groups.values()):
        base = f"stack{index + 1}" if len(groups) > 1 else ""
        parts = _split_repeats(group) if _has_repeats(group) else [("", group)]
        for label, part in parts:
            labelled.append((",".join(x for x in (base, label) if x), part))
    stacks = []
    for label, part in labelled:
        normal = part[0].normal
        ordered = sorted(part, key=lambda p: float(p.position @ normal))
        stacks.append(Stack(series_instance_uid=series_uid, planes=tuple(ordered), label=label))
    return stacks
