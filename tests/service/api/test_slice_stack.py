"""The viewer's display planes: distinct segment numbers, exact value types, presets, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.api.plane_orientation import plane_layout
from service.api.slice_stack import (
    SliceStack,
    StackCache,
    compact_values,
    display_values,
    label_planes,
)
from service.api.window_presets import CT_PRESETS, auto_window, window_presets
from service.pet.body_size import SuvType
from service.pet.suv import to_suv
from service.regions import Region, RegionSet
from tests.result_series import write_phantom_series

SHAPE = (6, 5, 4)


def _region(number: int, voxel: tuple[int, int, int]) -> Region:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[voxel] = True
    return Region(f"lesion {number}", number, mask)


def test_label_planes_keep_segments_numbered_255_and_above_apart() -> None:
    numbers = [1, 254, 255, 256, 300, 65535]
    regions = [_region(n, (i, 0, 0)) for i, n in enumerate(numbers)]
    labels = label_planes(RegionSet(regions, SHAPE, np.eye(4)))
    assert labels.dtype == np.dtype("<u2")
    assert labels[: len(numbers), 0, 0].tolist() == numbers


def test_values_stay_exact() -> None:
    hu = np.array([[[-1024.0, 0.0], [40.0, 3071.0]]], dtype=np.float32)
    assert compact_values(hu).dtype == np.int16
    assert np.array_equal(compact_values(hu), hu)
    suv = hu / 1000 + np.float32(0.125)
    assert compact_values(suv).dtype == np.float32 and np.array_equal(compact_values(suv), suv)
    wide = np.array([[[0.0, 40000.0]]], dtype=np.float32)  # beyond int16: kept as float
    assert compact_values(wide).dtype == np.float32


def test_display_values_are_in_the_unit_fedseg_measures(tmp_path: Path) -> None:
    ct = write_phantom_series(tmp_path / "ct", "CT", "axial")
    values, unit, notes = display_values(ct, SuvType.BW)
    assert unit == "HU" and not notes and values is ct.array
    mr = write_phantom_series(tmp_path / "mr", "MR", "axial")
    assert display_values(mr, SuvType.BW)[1:] == ("", ())
    pet = write_phantom_series(tmp_path / "pt", "PT", "prone")
    values, unit, notes = display_values(pet, SuvType.BW)
    assert unit == "SUVbw" and np.array_equal(values, to_suv(pet, SuvType.BW)[0])
    # SUVlbm needs the patient's height, which the phantom lacks: the reason is shown.
    assert display_values(pet, SuvType.LBM)[1] == "BQML"
    # Without the injected dose there is no SUV: the stored activity, in its Units, and why.
    for header in pet.headers:
        del header.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose
    values, unit, notes = display_values(pet, SuvType.BW)
    assert unit == "BQML" and values is pet.array
    assert len(notes) == 1 and "SUV: RadionuclideTotalDose" in notes[0], notes


def test_window_presets() -> None:
    names = {p.name: (p.width, p.level) for p in CT_PRESETS}
    assert names == {
        "Soft tissue W400 L40": (400, 40),
        "Lung W1500 L-600": (1500, -600),
        "Bone W2000 L300": (2000, 300),
        "Brain W80 L40": (80, 40),
    }
    values = np.linspace(0.0, 12.5, 1000, dtype=np.float32).reshape(10, 10, 10)
    pet = window_presets("PT", "SUVlbm", values)
    assert [(p.low, p.high) for p in pet] == [(0, 5), (0, 10), (0, 12.5)]
    assert pet[0].name == "SUVlbm 0-5" and pet[2].name == "SUVlbm 0-max (12.50)"
    uniform = np.random.default_rng(0).uniform(0.0, 1000.0, (20, 20, 20))
    (mr,) = window_presets("MR", "", uniform)
    assert mr.name == "Auto"
    assert mr.low == pytest.approx(5, abs=2) and mr.high == pytest.approx(995, abs=2)
    # PET that could not be converted to SUV: its maximum and an automatic window.
    assert [p.name for p in window_presets("PT", "BQML", values * 1e4)] == ["0-max", "Auto"]
    flat = auto_window(np.zeros((4, 4, 4), dtype=np.float32))
    assert flat.high > flat.low
    with pytest.raises(ValueError, match="must exceed"):
        CT_PRESETS[0].__class__("empty", 1.0, 1.0)


def _stack(nbytes_k: int) -> SliceStack:
    values = np.zeros((16, 16, nbytes_k), dtype=np.float32)
    return SliceStack(
        series_instance_uid="1.2",
        modality="MR",
        values=values,
        labels=np.zeros(values.shape, dtype=np.uint16),
        affine=np.eye(4),
        unit="",
        segments=(),
        presets=window_presets("MR", "", values),
        layout=plane_layout(np.eye(4), nbytes_k),
    )


def test_stack_cache_is_bounded_by_bytes_but_keeps_the_newest() -> None:
    cache = StackCache(capacity=4, max_bytes=_stack(4).nbytes * 2)
    for job in ("a", "b", "c"):
        cache.get((job, 0), lambda: _stack(4))
    assert [key for key, _ in cache._items.items()] == [("b", 0), ("c", 0)]
    big = cache.get(("d", 0), lambda: _stack(40))  # alone over the budget: still served
    assert list(cache._items) == [("d", 0)] and big.slices == 40
    with pytest.raises(ValueError, match="int16 or float32"):
        SliceStack(**{**_stack(1).__dict__, "values": np.zeros((16, 16, 1))})
