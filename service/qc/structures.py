"""Plausibility of each segmented structure: named checks, measured values, expected ranges.

A structure is judged against the image (is it inside the body; what are its values) and
against its label's priors (:mod:`service.qc.priors`): volume for the patient's age,
intensity, laterality from the LPS geometry, position relative to its neighbours, number of
connected components, and whether the field of view cuts it. Each check says ``pass``,
``warn``, ``fail`` or ``not_assessed``; the structure gets the worst of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from service.labels.registry import LabelEntry
from service.qc.body import BodyAnalysis
from service.qc.enum import QcStatus, Relation, Side, StructureCheck, worst
from service.qc.intended_use import Range
from service.qc.priors import INTENSITY_UNITS, Bounds, RelationPrior, StructurePrior

INSIDE_PASS = 0.9  # share of the structure inside the body: at least this passes
INSIDE_WARN = 0.5  # below this it fails
MIDLINE_TOLERANCE_MM = 10.0  # a centre this close to the midline is not on either side
REGION_EVIDENCE = {
    "thorax": "no lung parenchyma inside the body",
    "abdomen": "no trunk-wide cross-section without lung, below any lung",
}
BONE_HU = 200.0  # cortical bone (the vertebral body's posterior wall) is well above this
BONE_SEARCH_MM = (3.0, 30.0)  # the vertebral body lies this far in front of the cord's centre
_LEFT_CODE, _RIGHT_CODE = "7771000", "24028007"  # SNOMED CT laterality of the label tables


class StructureMask(Protocol):
    """A segmented structure cut to its bounding box (e.g. a writer's region crop)."""

    @property
    def name(self) -> str:
        """Label name."""

    @property
    def number(self) -> int:
        """Label value."""

    @property
    def code(self) -> LabelEntry | None:
        """The label-table entry, with its priors, if any."""

    @property
    def offset(self) -> tuple[int, int, int]:
        """Bounding-box start in the full grid."""

    @property
    def mask(self) -> np.ndarray:
        """Boolean mask of the bounding box."""


@dataclass(frozen=True)
class CheckResult:
    """One named check of one structure: what was measured against what was expected."""

    check: StructureCheck
    status: QcStatus
    value: float | str | None
    expected: str
    unit: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "check": self.check.value,
            "status": self.status.value,
            "value": self.value,
            "expected": self.expected,
            "unit": self.unit,
            "message": self.message,
        }


@dataclass(frozen=True)
class StructureQc:
    """The QC outcome of one structure."""

    name: str
    number: int
    status: QcStatus
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def reasons(self) -> list[str]:
        """The messages of the checks that warned or failed, worst first."""
        flagged = [c for c in self.checks if c.status in (QcStatus.FAIL, QcStatus.WARN)]
        flagged.sort(key=lambda c: -c.status.rank)
        return [f"{c.check.value}: {c.message}" for c in flagged]

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "number": self.number,
            "status": self.status.value,
            "reasons": self.reasons,
            "checks": [c.as_dict() for c in self.checks],
        }


@dataclass(frozen=True)
class QcImage:
    """The image a segmentation is judged on."""

    values: np.ndarray  # HU (CT), SUV (PT; None-equivalent: pass raw values and no PT prior)
    affine: np.ndarray
    modality: str
    body: BodyAnalysis | None
    age_years: float | None = None

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel, mL."""
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0


@dataclass(frozen=True)
class Extent:
    """Where a structure lies: its centre and its top and bottom along the patient's z."""

    centre: np.ndarray  # LPS mm
    top: float
    bottom: float
    top_cut: bool  # the field of view cuts it at the top, so the true top is higher
    bottom_cut: bool

    @classmethod
    def of(cls, points: np.ndarray, cut_faces: tuple[str, ...]) -> Extent:
        """The extent of LPS ``points`` (n, 3) of a structure cut at ``cut_faces``."""
        return cls(
            centre=points.mean(axis=0),
            top=float(points[:, 2].max()),
            bottom=float(points[:, 2].min()),
            top_cut="superior" in cut_faces,
            bottom_cut="inferior" in cut_faces,
        )


@dataclass(frozen=True)
class _Measured:
    """Geometry and values of one structure, computed once for all its checks."""

    voxels: np.ndarray  # (n, 3) full-grid indices
    extent: Extent
    volume_ml: float
    cut_faces: tuple[str, ...]


def _faces(
    affine: np.ndarray, shape: tuple[int, ...], offset: tuple[int, ...], size: tuple[int, ...]
) -> tuple[str, ...]:
    """Which sides of the field of view the box touches, named in patient terms."""
    names = {0: ("right", "left"), 1: ("anterior", "posterior"), 2: ("inferior", "superior")}
    cut = []
    for axis in range(3):
        direction = affine[:3, axis]
        patient = int(np.argmax(np.abs(direction)))
        low, high = names[patient]
        if direction[patient] < 0:
            low, high = high, low
        if offset[axis] == 0:
            cut.append(low)
        if offset[axis] + size[axis] == shape[axis]:
            cut.append(high)
    return tuple(dict.fromkeys(cut))


def _measure(structure: StructureMask, image: QcImage) -> _Measured:
    voxels = np.argwhere(structure.mask) + np.asarray(structure.offset)
    points = voxels @ image.affine[:3, :3].T + image.affine[:3, 3]
    cut = _faces(image.affine, image.values.shape, structure.offset, structure.mask.shape)
    return _Measured(
        voxels=voxels,
        extent=Extent.of(points, cut),
        volume_ml=len(voxels) * image.voxel_ml,
        cut_faces=cut,
    )


def _judge(value: float, bounds: Bounds) -> QcStatus:
    if not bounds.possible.contains(value):
        return QcStatus.FAIL
    if not bounds.expected.contains(value):
        return QcStatus.WARN
    return QcStatus.PASS


def _describe(bounds: Bounds, unit: str) -> str:
    return f"{bounds.expected.describe(unit)} (possible {bounds.possible.describe(unit)})"


def _inside_body(measured: _Measured, image: QcImage, prior: StructurePrior | None) -> CheckResult:
    check = StructureCheck.INSIDE_BODY
    if image.body is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, None, "", "", "no body rule for this modality"
        )
    trunk = bool(prior and prior.trunk)
    where = image.body.trunk if trunk else image.body.body
    coarse = measured.voxels // np.asarray(image.body.grid.factors)
    fraction = float(where[coarse[:, 0], coarse[:, 1], coarse[:, 2]].mean())
    status = (
        QcStatus.PASS
        if fraction >= INSIDE_PASS
        else QcStatus.WARN
        if fraction >= INSIDE_WARN
        else QcStatus.FAIL
    )
    part = "the trunk" if trunk else "the body"
    return CheckResult(
        check,
        status,
        round(fraction, 3),
        f">= {INSIDE_PASS:g} inside {part}",
        "fraction",
        f"{100 * fraction:.0f} % of it lies inside {part} (expected >= {100 * INSIDE_PASS:.0f} %)",
    )


def _intensity_value(measured: _Measured, image: QcImage) -> float | None:
    i, j, k = measured.voxels.T
    mean = float(image.values[i, j, k].mean())
    if image.modality != "MR":
        return mean
    if image.body is None or not image.body.body.any():
        return None
    median = float(np.median(image.body.values[image.body.body]))
    return mean / median if median > 0 else None


def _intensity(measured: _Measured, image: QcImage, prior: StructurePrior | None) -> CheckResult:
    check = StructureCheck.INTENSITY
    unit = INTENSITY_UNITS.get(image.modality, "")
    bounds = prior.intensity.get(image.modality) if prior else None
    value = _intensity_value(measured, image)
    if value is None:
        return CheckResult(check, QcStatus.NOT_ASSESSED, None, "", unit, "no body to scale MR by")
    shown = round(value, 3)
    if bounds is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, shown, "", unit, f"mean {value:.4g} {unit}; no prior"
        )
    status = _judge(value, bounds)
    expected = _describe(bounds, unit)
    return CheckResult(
        check, status, shown, expected, unit, f"mean {value:.4g} {unit}, expected {expected}"
    )


def _volume(measured: _Measured, image: QcImage, prior: StructurePrior | None) -> CheckResult:
    check = StructureCheck.VOLUME
    value = round(measured.volume_ml, 2)
    chosen = prior.volume_for(image.age_years) if prior else None
    if chosen is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, value, "", "mL", f"{value:g} mL; no prior for this age"
        )
    bounds, band = chosen
    note = ""
    if measured.cut_faces:
        # A cut-off structure is only partly in the image: only the upper bounds still apply.
        bounds = Bounds(
            expected=Range(max=bounds.expected.max), possible=Range(max=bounds.possible.max)
        )
        note = "; cut by the field of view, so only the upper bound applies"
    status = _judge(measured.volume_ml, bounds)
    expected = _describe(bounds, "mL")
    message = f"{value:g} mL, expected {expected} ({band}){note}"
    return CheckResult(check, status, value, f"{expected} ({band})", "mL", message)


def _side(structure: StructureMask, prior: StructurePrior | None) -> Side | None:
    if prior and prior.side:
        return prior.side
    laterality = structure.code.laterality if structure.code else None
    if laterality is None:
        return None
    return {_LEFT_CODE: Side.LEFT, _RIGHT_CODE: Side.RIGHT}.get(laterality.code)


def _laterality(
    structure: StructureMask, measured: _Measured, image: QcImage, prior: StructurePrior | None
) -> CheckResult:
    check = StructureCheck.LATERALITY
    side = _side(structure, prior)
    if side is None:
        return CheckResult(check, QcStatus.NOT_ASSESSED, None, "", "mm", "no side expected")
    midline = _trunk_centre(measured, image)
    if midline is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, None, side.value, "mm", "no trunk to find the midline"
        )
    # LPS: +x is the patient's left.
    offset = float(measured.extent.centre[0] - midline[0])
    toward = offset if side is Side.LEFT else -offset
    status = (
        QcStatus.PASS
        if toward > MIDLINE_TOLERANCE_MM
        else QcStatus.WARN
        if toward > -MIDLINE_TOLERANCE_MM
        else QcStatus.FAIL
    )
    actual = "left" if offset > 0 else "right"
    message = (
        f"centre {abs(offset):.0f} mm {actual} of the midline; a {side.value} structure "
        f"lies more than {MIDLINE_TOLERANCE_MM:g} mm to the {side.value}"
    )
    return CheckResult(
        check, status, round(offset, 1), f"{side.value} of the midline", "mm", message
    )


def _trunk_centre(measured: _Measured, image: QcImage) -> np.ndarray | None:
    """The LPS centre of the trunk in the planes the structure occupies."""
    if image.body is None:
        return None
    factors = np.asarray(image.body.grid.factors)
    planes = np.unique(measured.voxels[:, 2] // factors[2])
    trunk = image.body.trunk[:, :, planes]
    if not trunk.any():
        return None
    index = np.argwhere(trunk).astype(float)
    index[:, 2] = planes[index[:, 2].astype(int)]
    centre = index.mean(axis=0)
    return image.body.grid.affine[:3, :3] @ centre + image.body.grid.affine[:3, 3]


def _components(
    measured: _Measured, structure: StructureMask, prior: StructurePrior | None
) -> CheckResult:
    check = StructureCheck.COMPONENTS
    _, count = ndimage.label(structure.mask, structure=np.ones((3, 3, 3), dtype=bool))
    limit = prior.max_components if prior else None
    if limit is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, count, "", "", f"{count} connected component(s); no prior"
        )
    status = QcStatus.PASS if count <= limit else QcStatus.WARN
    return CheckResult(
        check,
        status,
        count,
        f"<= {limit}",
        "",
        f"{count} connected component(s), expected <= {limit}",
    )


def _fov_edge(measured: _Measured, prior: StructurePrior | None) -> CheckResult:
    check = StructureCheck.FOV_EDGE
    faces = ", ".join(measured.cut_faces)
    if not measured.cut_faces:
        return CheckResult(
            check, QcStatus.PASS, "", "inside the field of view", "", "not cut by the field of view"
        )
    if prior and prior.extends_beyond_fov:
        return CheckResult(
            check,
            QcStatus.PASS,
            faces,
            "may extend beyond",
            "",
            f"cut at the {faces} edge, as expected for it",
        )
    return CheckResult(
        check,
        QcStatus.WARN,
        faces,
        "inside the field of view",
        "",
        f"cut off at the {faces} edge of the field of view; its volume is a lower bound",
    )


def _above(upper: Extent, lower: Extent, step: float) -> tuple[QcStatus, float | None]:
    """Whether ``upper``'s top is higher than ``lower``'s, and by how much (mm)."""
    if upper.top_cut and lower.top_cut:
        return QcStatus.NOT_ASSESSED, None  # both run off the top of the image
    difference = upper.top - lower.top
    if upper.top_cut or difference > step:
        return QcStatus.PASS, difference
    return (QcStatus.WARN if difference >= -step else QcStatus.FAIL), difference


def _relative(
    relation: RelationPrior, name: str, extents: dict[str, Extent], step: float
) -> CheckResult:
    check, other = StructureCheck.POSITION, str(relation.of)
    word = relation.relation.value
    if other not in extents:
        return CheckResult(
            check,
            QcStatus.NOT_ASSESSED,
            None,
            f"{word} {other}",
            "mm",
            f"no {other} in this result",
        )
    mine, theirs = extents[name], extents[other]
    upper, lower = (mine, theirs) if relation.relation is Relation.ABOVE else (theirs, mine)
    status, difference = _above(upper, lower, step)
    if difference is None:
        return CheckResult(
            check,
            status,
            None,
            f"top {word} {other}'s",
            "mm",
            f"both {name} and {other} run off the top of the image",
        )
    value = round(difference if relation.relation is Relation.ABOVE else -difference, 1)
    where = "above" if value > 0 else "below"
    message = f"its top is {abs(value):.0f} mm {where} the top of {other} (expected {word})"
    return CheckResult(check, status, value, f"top {word} {other}'s", "mm", message)


def _posterior_half(measured: _Measured, image: QcImage) -> CheckResult:
    check = StructureCheck.POSITION
    centre = _trunk_centre(measured, image)
    if centre is None:
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, None, "posterior half of the trunk", "mm", "no trunk"
        )
    offset = float(measured.extent.centre[1] - centre[1])  # LPS: +y is posterior
    status = QcStatus.PASS if offset > 0 else QcStatus.FAIL
    where = "behind" if offset > 0 else "in front of"
    message = f"centre {abs(offset):.0f} mm {where} the trunk's centre (expected behind it)"
    return CheckResult(
        check, status, round(offset, 1), "posterior half of the trunk", "mm", message
    )


def _bone_in_front(measured: _Measured, image: QcImage) -> CheckResult:
    check = StructureCheck.POSITION
    expected = f"bone {BONE_SEARCH_MM[0]:g} to {BONE_SEARCH_MM[1]:g} mm in front"
    if image.modality != "CT":
        return CheckResult(
            check, QcStatus.NOT_ASSESSED, None, expected, "", "bone is only seen on CT"
        )
    inverse = np.linalg.inv(image.affine)
    depths = np.arange(BONE_SEARCH_MM[0], BONE_SEARCH_MM[1] + 0.5, 1.0)
    offsets = np.array([[dx, -d, 0.0] for d in depths for dx in (-5.0, 0.0, 5.0)])
    shape = np.asarray(image.values.shape)
    planes = np.unique(measured.voxels[:, 2])
    hits = 0
    for k in planes:
        centre = measured.voxels[measured.voxels[:, 2] == k].mean(axis=0)
        point = image.affine[:3, :3] @ centre + image.affine[:3, 3]
        index = np.rint((offsets + point) @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
        index = index[np.all((index >= 0) & (index < shape), axis=1)]
        hits += bool(np.any(image.values[index[:, 0], index[:, 1], index[:, 2]] > BONE_HU))
    fraction = hits / len(planes)
    status = QcStatus.PASS if fraction >= 0.5 else QcStatus.FAIL
    message = (
        f"bone in front of it in {100 * fraction:.0f} % of its planes "
        "(expected in most: the vertebral bodies)"
    )
    return CheckResult(check, status, round(fraction, 3), expected, "fraction", message)


def _region(prior: StructurePrior | None, image: QcImage) -> list[CheckResult]:
    """Whether the image shows the body region the structure belongs to."""
    if prior is None or prior.region is None:
        return []
    check, region = StructureCheck.POSITION, prior.region.value
    expected = f"in the {region}, which the image shows"
    if image.body is None or prior.region not in image.body.regions_assessed:
        message = f"the image cannot show the {region}"
        return [CheckResult(check, QcStatus.NOT_ASSESSED, None, expected, "", message)]
    if prior.region in image.body.regions_seen:
        message = f"the image shows the {region}"
        return [CheckResult(check, QcStatus.PASS, region, expected, "", message)]
    message = f"the image shows no {region} ({REGION_EVIDENCE.get(region, 'not found')})"
    return [CheckResult(check, QcStatus.FAIL, "not seen", expected, "", message)]


def _relation(
    relation: RelationPrior,
    name: str,
    measured: _Measured,
    extents: dict[str, Extent],
    image: QcImage,
) -> CheckResult:
    if relation.relation is Relation.POSTERIOR_HALF:
        return _posterior_half(measured, image)
    if relation.relation is Relation.POSTERIOR_TO_BONE:
        return _bone_in_front(measured, image)
    step = float(np.linalg.norm(image.affine[:3, 2]))
    return _relative(relation, name, extents, step)


def check_structures(structures: Sequence[StructureMask], image: QcImage) -> list[StructureQc]:
    """QC every structure of one segmentation of one image (relations see the others)."""
    measured = {s.number: _measure(s, image) for s in structures}
    extents: dict[str, Extent] = {}
    for structure in structures:  # relations name labels; a repeated name: its first region
        extents.setdefault(structure.name, measured[structure.number].extent)
    results = []
    for structure in structures:
        prior = structure.code.qc if structure.code else None
        wanted = set(prior.checks) if prior else set()
        m = measured[structure.number]
        checks = [
            _inside_body(m, image, prior),
            _intensity(m, image, prior),
            _volume(m, image, prior),
            _laterality(structure, m, image, prior),
            *_region(prior, image),
            *(
                _relation(r, structure.name, m, extents, image)
                for r in (prior.relations if prior else [])
            ),
            _components(m, structure, prior),
            _fov_edge(m, prior),
        ]
        if prior:
            checks = [c for c in checks if c.check in wanted]
        status = worst([c.status for c in checks])
        results.append(StructureQc(structure.name, structure.number, status, tuple(checks)))
    return results
