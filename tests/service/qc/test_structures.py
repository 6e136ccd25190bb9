"""Each structure check on a small synthetic CT torso whose truth is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from service.labels.registry import get_table
from service.qc.body import analyse_body
from service.qc.enum import BodyRegion, QcStatus, StructureCheck
from service.qc.structures import QcImage, StructureQc, check_structures
from service.results.crops import RegionCrop, crop_mask

SHAPE = (100, 80, 30)  # i: patient right → left, j: anterior → posterior, k: inferior → superior
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])  # LPS, 4 mm voxels: a 400 × 320 mm field, 120 mm tall
TABLE = get_table("ct-organs")


def _ellipse(ci: float, cj: float, ri: float, rj: float) -> np.ndarray:
    i, j = np.ogrid[: SHAPE[0], : SHAPE[1]]
    return ((i - ci) / ri) ** 2 + ((j - cj) / rj) ** 2 <= 1


def torso() -> np.ndarray:
    """Soft tissue 320 mm wide; lungs above k = 18; a vertebra with the cord behind it."""
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    hu[_ellipse(50, 40, 40, 28)] = 40.0
    for k in range(18, SHAPE[2]):
        hu[:, :, k][_ellipse(72, 38, 12, 14)] = -850.0  # left lung (patient's left: +x)
        hu[:, :, k][_ellipse(28, 38, 12, 14)] = -850.0
    hu[_ellipse(50, 56, 5, 4)] = 400.0  # vertebral body
    hu[_ellipse(50, 63, 2, 2)] = 30.0  # cord, posterior (+y) of the vertebral body
    hu[:, 74:75, :] = 0.0  # the table: a one-voxel shell under the patient
    return hu


def _structure(name: str, box: tuple[slice, slice, slice]) -> RegionCrop:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[box] = True
    offset, cropped = crop_mask(mask)  # type: ignore[misc]
    entry = TABLE.by_name(name)
    return RegionCrop(name, entry.number, entry, offset, cropped)


def _qc(structures: list[RegionCrop], age: float | None = 40.0) -> dict[str, StructureQc]:
    hu = torso()
    image = QcImage(hu, AFFINE, "CT", analyse_body(hu, AFFINE, "CT"), age)
    return {q.name: q for q in check_structures(structures, image)}


def _check(outcome: StructureQc, check: StructureCheck) -> list[QcStatus]:
    return [c.status for c in outcome.checks if c.check is check]


LIVER = (slice(18, 48), slice(22, 50), slice(1, 18))  # right of the midline, below the lungs
CORD = (slice(49, 52), slice(62, 65), slice(0, 30))


def test_body_trunk_lungs_and_regions() -> None:
    body = analyse_body(torso(), AFFINE, "CT")
    assert body is not None and body.regions_seen == {BodyRegion.THORAX, BodyRegion.ABDOMEN}
    assert not body.body[:, 74 // 1, :].any()  # the table is not the patient
    assert 500 < body.lungs_ml < 900  # two 12 x 14 x 12-voxel lungs, rims opened away


def test_plausible_structures_pass() -> None:
    results = _qc([_structure("liver", LIVER), _structure("spinal_cord", CORD)])
    liver, cord = results["liver"], results["spinal_cord"]
    assert liver.status is QcStatus.PASS, liver.reasons
    assert cord.status is QcStatus.PASS, cord.reasons  # cut by the FOV, as a cord always is


def test_a_left_organ_on_the_right_fails_laterality() -> None:
    (kidney,) = _qc(
        [_structure("kidney_left", (slice(24, 34), slice(52, 62), slice(2, 10)))]
    ).values()
    assert _check(kidney, StructureCheck.LATERALITY) == [QcStatus.FAIL]
    assert "right of the midline" in " ".join(kidney.reasons)


def test_a_cord_on_the_table_fails_inside_body_intensity_and_position() -> None:
    (cord,) = _qc(
        [_structure("spinal_cord", (slice(49, 52), slice(76, 79), slice(0, 30)))]
    ).values()
    assert cord.status is QcStatus.FAIL
    assert _check(cord, StructureCheck.INSIDE_BODY) == [QcStatus.FAIL]
    assert _check(cord, StructureCheck.INTENSITY) == [QcStatus.FAIL]
    assert QcStatus.FAIL in _check(cord, StructureCheck.POSITION)  # no vertebra in front


def test_a_lung_below_the_liver_fails_position() -> None:
    lung = _structure("lung_right", (slice(24, 32), slice(32, 44), slice(2, 8)))
    results = _qc([_structure("liver", LIVER), lung])
    assert QcStatus.FAIL in _check(results["lung_right"], StructureCheck.POSITION)
    assert QcStatus.FAIL in _check(results["liver"], StructureCheck.POSITION)  # both named


@pytest.mark.parametrize(("age", "status"), [(40.0, QcStatus.WARN), (5.0, QcStatus.FAIL)])
def test_volume_is_judged_for_the_age(age: float, status: QcStatus) -> None:
    # 680 mL: splenomegaly in an adult (expected <= 450 mL), beyond any 5-year-old's
    # (possible <= 620 mL: five times the 15-year ICRP 89 reference).
    spleen = _structure("spleen", (slice(60, 85), slice(28, 53), slice(1, 18)))
    (outcome,) = _qc([spleen], age).values()
    assert _check(outcome, StructureCheck.VOLUME) == [status]


def test_a_cut_structure_warns_and_only_its_upper_bound_counts() -> None:
    small = _structure("liver", (slice(30, 34), slice(30, 34), slice(0, 3)))  # 3 mL, cut below
    (liver,) = _qc([small]).values()
    assert _check(liver, StructureCheck.FOV_EDGE) == [QcStatus.WARN]
    assert _check(liver, StructureCheck.VOLUME) == [QcStatus.PASS]


def test_extra_components_warn() -> None:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[LIVER] = True
    mask[40:44, 40:44, 20:23] = True  # a separate island
    offset, cropped = crop_mask(mask)  # type: ignore[misc]
    entry = TABLE.by_name("liver")
    (liver,) = _qc([RegionCrop("liver", 1, entry, offset, cropped)]).values()
    assert _check(liver, StructureCheck.COMPONENTS) == [QcStatus.WARN]
