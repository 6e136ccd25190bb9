"""Regions cut to bounding boxes: the writers' and the measurements' input."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from service.dicom.volume import Volume
from service.errors import MaskInputError
from service.labels import get_table
from service.regions import RegionSet
from service.results.crops import crop_mask, region_crops
from service.results.measurements import build_report
from tests.result_series import phantom_labels


def test_crop_is_the_bounding_box() -> None:
    mask = np.zeros((7, 8, 9), dtype=bool)
    mask[2, 3, 4] = mask[4, 6, 5] = True
    cropped = crop_mask(mask)
    assert cropped is not None
    offset, crop = cropped
    assert offset == (2, 3, 4) and crop.shape == (3, 4, 2) and crop.flags.c_contiguous
    assert crop.sum() == 2 and crop[0, 0, 0] and crop[2, 3, 1]
    assert crop_mask(np.zeros((3, 3, 3), dtype=bool)) is None


def test_label_map_and_region_set_give_the_same_crops(
    make_series: Callable[[str, str], Volume],
) -> None:
    volume = make_series("CT", "oblique")
    table = get_table("ct-organs")
    labels = phantom_labels()
    from_map = list(region_crops(labels.astype(np.uint8), volume, table))
    from_set = list(
        region_crops(RegionSet.from_label_map(labels, volume.affine, table), volume, table)
    )
    assert [c.name for c in from_map] == ["liver", "spleen", "kidney_left"]
    for a, b in zip(from_map, from_set, strict=True):
        assert (a.name, a.number, a.code, a.offset) == (b.name, b.number, b.code, b.offset)
        assert np.array_equal(a.mask, b.mask)
        full = np.zeros(volume.shape, dtype=bool)
        full[a.box] = a.mask
        assert np.array_equal(full, labels == a.number)


def test_unknown_label_value_is_refused(make_series: Callable[[str, str], Volume]) -> None:
    volume = make_series("CT", "axial")
    labels = phantom_labels().astype(np.uint8)
    labels[0, 0, 0] = 200
    with pytest.raises(MaskInputError, match="200"):
        list(region_crops(labels, volume, get_table("ct-organs")))


@pytest.mark.parametrize("modality", ["CT", "PT"])
def test_measurements_on_crops_equal_those_on_full_masks(
    make_series: Callable[[str, str], Volume], modality: str
) -> None:
    volume = make_series(modality, "axial")
    table = get_table("ct-organs")
    regions = RegionSet.from_label_map(phantom_labels(), volume.affine, table)
    crops = list(region_crops(phantom_labels(), volume, table))
    numbers = {c.number: n for n, c in enumerate(crops, start=1)}
    full = build_report(volume, regions, numbers, "a 1")
    cropped = build_report(volume, crops, numbers, "a 1")
    assert full == cropped
    assert [s.voxel_count for s in cropped.segments] == [
        int(np.sum(phantom_labels() == c.number)) for c in crops
    ]
    assert (cropped.segments[0].pet is not None) == (modality == "PT")
