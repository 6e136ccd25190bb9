from __future__ import annotations

import numpy as np
import pytest

from training.phantoms import PhantomConfig, make_case
from training.phantoms.config import ORGAN_VALUES, Size
from training.phantoms.sites import draw_site


def _arrays(config: PhantomConfig, site: int, case: int) -> list[np.ndarray]:
    c = make_case(config, site, case)
    assert c.ct is not None and c.pt is not None and c.mr is not None
    return [
        c.ct.hu,
        c.ct.organs,
        c.pt.activity,
        c.pt.lesion_instances,
        c.mr.signal,
        c.ct.grid.affine,
    ]


def test_same_seed_identical_different_seed_differs() -> None:
    config = PhantomConfig(seed=4, size="tiny")
    first, again = _arrays(config, 2, 1), _arrays(config, 2, 1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _arrays(PhantomConfig(seed=5, size="tiny"), 2, 1)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    assert not np.array_equal(first[0], _arrays(config, 2, 2)[0])  # cases differ too


def test_sites_differ_in_acquisition() -> None:
    profiles = [draw_site(site, 0, Size.SMALL) for site in range(1, 7)]
    assert len({round(p.ct_fov_mm, 3) for p in profiles}) == 6
    assert len({round(p.ct_thickness_mm, 3) for p in profiles}) == 6
    assert len({p.patient_position for p in profiles}) >= 2
    assert len({p.manufacturer for p in profiles}) >= 2
    spacings = []
    for site in (1, 2, 3):
        case = make_case(PhantomConfig(sites=3, seed=0, size="tiny", modalities=("ct",)), site, 1)
        assert case.ct is not None
        spacings.append(tuple(np.round(np.linalg.norm(case.ct.grid.affine[:3, :3], axis=0), 4)))
    assert len(set(spacings)) == 3


def test_absent_organ_not_in_image_or_labels() -> None:
    config = PhantomConfig(seed=1, size="tiny", absent_organ_rate=1.0, modalities=("ct",))
    case = make_case(config, 1, 1)
    full = make_case(
        PhantomConfig(seed=1, size="tiny", absent_organ_rate=0.0, modalities=("ct",)), 1, 1
    )
    assert case.ct is not None and full.ct is not None
    (organ,) = case.anatomy.absent
    value = ORGAN_VALUES[organ]
    assert not np.any(case.ct.organs == value)
    where = full.ct.organs == value
    assert where.sum() > 0
    # Same anatomy otherwise; where the organ was, the image now holds other tissue.
    np.testing.assert_array_equal(case.ct.organs[~where], full.ct.organs[~where])
    assert case.ct.hu[where].mean() < full.ct.hu[where].mean() - 30.0


def test_prone_flips_grid_not_anatomy() -> None:
    livers = {}
    for seed in range(12):
        profile = draw_site(1, seed, Size.TINY)
        if profile.patient_position in livers:
            continue
        case = make_case(PhantomConfig(sites=1, seed=seed, size="tiny", modalities=("ct",)), 1, 1)
        assert case.ct is not None
        ijk = np.argwhere(case.ct.organs == ORGAN_VALUES["liver"])
        centre = ijk.mean(axis=0) @ case.ct.grid.affine[:3, :3].T + case.ct.grid.affine[:3, 3]
        livers[profile.patient_position] = (centre, case.ct.grid.affine)
    assert set(livers) == {"HFS", "FFS", "HFP"}
    for centre, _ in livers.values():
        assert centre[0] < -20  # liver on the patient's right (LPS −x) in every position
    assert livers["FFS"][1][0, 0] < 0 and livers["FFS"][1][2, 2] < 0  # feet-first: i and k flip
    assert livers["HFP"][1][1, 1] < 0 and livers["HFP"][1][0, 0] < 0  # prone: i and j flip


def test_pet_noise_is_optional_and_seeded() -> None:
    quiet = make_case(PhantomConfig(seed=2, size="tiny", modalities=("pt",)), 1, 1)
    noisy = make_case(PhantomConfig(seed=2, size="tiny", modalities=("pt",), pet_noise=0.1), 1, 1)
    assert quiet.pt is not None and noisy.pt is not None
    inside = quiet.pt.lesion_instances == 1
    assert np.ptp(quiet.pt.suv[inside]) == 0.0
    assert np.ptp(noisy.pt.suv[inside]) > 0.0


@pytest.mark.parametrize("kwargs", [{"sites": 0}, {"full_label_sites": 9}, {"pet_noise": -1.0}])
def test_config_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PhantomConfig(**kwargs)  # type: ignore[arg-type]


def test_malignant_tumours_are_heterogeneous_and_benign_smooth() -> None:
    config = PhantomConfig(sites=1, seed=0, size="small", modalities=("mr",))
    spread: dict[str, list[float]] = {"malignant": [], "benign": []}
    for number in range(1, 7):
        case = make_case(config, 1, number)
        assert case.mr is not None
        inside = case.mr.tumour_mask > 0
        values = case.mr.signal[inside]
        spread[case.mr.tumour.kind].append(float(values.std() / values.mean()))
        if case.mr.tumour.kind == "benign":
            assert case.mr.tumour.lobes == 0
    assert spread["malignant"] and spread["benign"]
    assert min(spread["malignant"]) > 2 * max(spread["benign"])
