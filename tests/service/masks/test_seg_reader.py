import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.dicom.volume import Volume, read_volume
from service.errors import MaskInputError
from service.masks import load_regions

pytestmark = pytest.mark.data

_CT2 = Path(os.path.dirname(pydicom.data.__file__)) / "test_files/dicomdirtests/77654033/CT2"


def _highdicom_masks(seg_path: Path, volume: Volume) -> dict[int, np.ndarray]:
    """Independent reading: highdicom's pixels by source instance, as [i, j, k] per segment."""
    seg = hd.seg.segread(seg_path)
    uids = [s.sop_instance_uid for s in volume.slices]
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=list(seg.segment_numbers),
        combine_segments=False,
        ignore_spatial_locations=True,
        skip_overlap_checks=True,
        assert_missing_frames_are_empty=True,
    )  # (k, rows, columns, segments)
    return {
        n: np.transpose(pixels[..., s] > 0, (2, 1, 0)) for s, n in enumerate(seg.segment_numbers)
    }


@pytest.mark.parametrize(
    ("seg", "image", "names"),
    [
        (
            "seg-dcmqi/data/segmentations/liver.dcm",
            "seg-dcmqi/data/segmentations/ct-3slice",
            ["Liver"],
        ),
        (
            "seg-dcmqi/data/segmentations/partial_overlaps.dcm",
            "seg-dcmqi/data/segmentations/ct-3slice",
            ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"],
        ),
        (
            "seg-dcmqi/data/segmentations/23x38x3/seg/label.seg",
            "seg-dcmqi/data/segmentations/23x38x3/image",
            ["Liver"],
        ),
        (
            "seg-dcmqi/data/segmentations/24x38x3/seg/label.seg",
            "seg-dcmqi/data/segmentations/24x38x3/image",
            ["Liver"],
        ),
        (
            "seg-highdicom/data/test_files/seg_image_ct_binary_single_frame.dcm",
            "seg-highdicom/data/test_files/ct_image.dcm",
            None,
        ),
    ],
)
def test_binary_seg_matches_highdicom(
    data_dir, seg: str, image: str, names: list[str] | None
) -> None:  # type: ignore[no-untyped-def]
    volume = read_volume(data_dir(image))
    regions = load_regions(data_dir(seg), volume)
    if names is not None:
        assert regions.names == names
    expected = _highdicom_masks(data_dir(seg), volume)
    for region in regions:
        assert region.voxel_count > 0
        assert np.array_equal(region.mask, expected[region.number]), region.name


def test_overlapping_segments_stay_separate(data_dir) -> None:  # type: ignore[no-untyped-def]
    folder = data_dir("seg-dcmqi/data/segmentations")
    regions = load_regions(folder / "partial_overlaps.dcm", read_volume(folder / "ct-3slice"))
    assert regions.overlaps()
    with pytest.raises(MaskInputError, match="overlap"):
        regions.to_label_map()


def test_labelmap_seg_matches_highdicom_with_and_without_palette(data_dir) -> None:  # type: ignore[no-untyped-def]
    folder = data_dir("seg-dcmqi/data/segmentations")
    volume = read_volume(folder / "24x38x3/image")
    plain = load_regions(folder / "sparse-labelmap-noppv.dcm", volume)
    palette = load_regions(folder / "sparse-labelmap-ppv5.dcm", volume)
    assert plain.names == palette.names == ["Liver"]  # segment 0 (background) is no region
    assert plain.regions[0].voxel_count == 630
    assert np.array_equal(plain.regions[0].mask, palette.regions[0].mask)
    expected = _highdicom_masks(folder / "sparse-labelmap-noppv.dcm", volume)
    assert np.array_equal(plain.regions[0].mask, expected[plain.regions[0].number])


@pytest.mark.parametrize(
    "name",
    [
        "seg_image_ct_binary.dcm",
        "seg_image_ct_binary_fractional.dcm",
        "seg_image_ct_true_fractional.dcm",
        "seg_image_ct_binary_overlap.dcm",
    ],
)
def test_highdicom_ct_segs_are_read(data_dir, name: str) -> None:  # type: ignore[no-untyped-def]
    # CT2 holds 3 contiguous slices and a 4th 200 mm away; read the contiguous ones.
    volume = read_volume([_CT2 / "17136", _CT2 / "17166", _CT2 / "17196"])
    path = data_dir("seg-highdicom/data/test_files") / name
    try:
        regions = load_regions(path, volume)
    except MaskInputError as exc:
        pytest.fail(f"{name}: {exc}")
    assert all(r.voxel_count > 0 for r in regions)


def _shifted_copy(source: Path, target: Path, shift_mm: float) -> Path:
    ds = pydicom.dcmread(source)
    for item in ds.PerFrameFunctionalGroupsSequence:
        position = item.PlanePositionSequence[0]
        x, y, z = (float(v) for v in position.ImagePositionPatient)
        position.ImagePositionPatient = [x + shift_mm, y, z + shift_mm]
    ds.save_as(target)
    return target


def test_frames_slightly_off_the_grid_are_read_and_far_off_refused(
    data_dir, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = data_dir("seg-dcmqi/data/segmentations")
    volume = read_volume(folder / "ct-3slice")
    original = load_regions(folder / "liver.dcm", volume).regions[0].mask
    spacing = min(volume.spacing)
    near = _shifted_copy(folder / "liver.dcm", tmp_path / "near.dcm", 0.05 * spacing)
    assert np.array_equal(load_regions(near, volume).regions[0].mask, original)
    far = _shifted_copy(folder / "liver.dcm", tmp_path / "far.dcm", 0.4 * spacing)
    with pytest.raises(MaskInputError, match="does not lie on the voxel grid"):
        load_regions(far, volume)
