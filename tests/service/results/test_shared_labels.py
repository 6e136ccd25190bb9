"""Segments that share a label stay apart, and a de-identified source gives valid outputs.

The input is what dcmqi writes for metastases: a DICOM-SEG whose ten segments are all labelled
"Neoplasm, Secondary", here on the real STS_001 PET (SUVbw), written with highdicom. The source
says PatientIdentityRemoved YES but, as much public research data, not how.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.cli.main import main
from service.dicom.volume import Volume, read_volume
from service.masks import load_regions
from service.results.source_attributes import UNSTATED_METHOD
from tests.dciodvfy import assert_valid

pytestmark = pytest.mark.data

LABEL = "Neoplasm, Secondary"
COUNT = 10


@pytest.fixture(scope="module")
def case(data_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    """(image folder, SEG path, volume, expected SUVmax per segment number)."""
    root = tmp_path_factory.mktemp("shared-labels")
    image = root / "pet"
    image.mkdir()
    source = data_dir("sts-pet/ibsi_validation/dicom/STS_001/PET/image")
    for path in sorted(source.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        del ds.DeidentificationMethod
        del ds.DeidentificationMethodCodeSequence
        assert ds.PatientIdentityRemoved == "YES"
        ds.save_as(image / path.name)
    volume = read_volume(image)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    rng = np.random.default_rng(18)
    hot = np.argwhere(volume.array > 0.5)
    expected: dict[int, float] = {}
    for number in range(1, COUNT + 1):
        while True:  # 2×2×2 cubes that do not touch, so each is one lesion
            i, j, k = hot[rng.integers(len(hot))]
            box = (slice(i, i + 2), slice(j, j + 2), slice(k, k + 2))
            grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
            if labels[grown].any() or min(i, j, k) < 1 or k + 2 >= volume.shape[2]:
                continue
            labels[box] = number
            expected[number] = float(volume.array[box].max())
            break
    assert len(set(expected.values())) == COUNT  # the ten SUVmax differ
    seg = root / "metastases.dcm"
    _write_seg(volume, labels, seg)
    return image, seg, volume, expected


def _write_seg(volume: Volume, labels: np.ndarray, path: Path) -> None:
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=LABEL,
            segmented_property_category=hd.sr.CodedConcept(
                "49755003", "SCT", "Morphologically Altered Structure"
            ),
            segmented_property_type=hd.sr.CodedConcept("14799000", "SCT", LABEL),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for n in range(1, COUNT + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=[pydicom.dcmread(s.path) for s in volume.slices],
        pixel_array=np.ascontiguousarray(labels.transpose(2, 1, 0)),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=50,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(path)


def test_reader_keeps_ten_regions(case) -> None:
    _, seg, volume, expected = case
    regions = load_regions(seg, volume)
    assert len(regions) == COUNT
    assert set(regions.names) == {LABEL}
    assert [r.number for r in regions] == sorted(expected)


def test_measure_reports_ten_lesions(capsys, case) -> None:
    image, seg, _, expected = case
    assert main(["measure", "--image", str(image), "--mask", str(seg), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    pet = result["pet"]
    assert [r["number"] for r in pet] == sorted(expected)
    assert all(r["name"] == LABEL and r["lesion_count"] == 1 for r in pet)
    assert [r["suv_max"] for r in pet] == pytest.approx([expected[n] for n in sorted(expected)])
    assert [s["number"] for s in result["statistics"]] == sorted(expected)


def test_convert_writes_ten_of_everything_valid_for_a_deidentified_source(
    tmp_path: Path, case
) -> None:
    image, seg, volume, expected = case
    out = tmp_path / "out"
    argv = ["convert", "--image", str(image), "--mask", str(seg), "--out", str(out)]
    assert main([*argv, "--task", "pet-lesion"]) == 0
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
        ds = pydicom.dcmread(out / name)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod == UNSTATED_METHOD
    written = pydicom.dcmread(out / "seg.dcm")
    assert len(written.SegmentSequence) == COUNT
    assert {s.SegmentLabel for s in written.SegmentSequence} == {LABEL}
    assert len({s.TrackingID for s in written.SegmentSequence}) == COUNT
    rtstruct = pydicom.dcmread(out / "rtstruct.dcm")
    names = [roi.ROIName for roi in rtstruct.StructureSetROISequence]
    assert names == [LABEL] + [f"{LABEL} {n}" for n in range(2, COUNT + 1)]
    back = load_regions(out / "rtstruct.dcm", volume)
    assert len(back) == COUNT
    data = json.loads((out / "measurements.json").read_text())
    maxima = [s["pet"]["suv_max"] for s in data["segments"]]
    assert [s["segment_number"] for s in data["segments"]] == list(range(1, COUNT + 1))
    assert sorted(maxima) == pytest.approx(sorted(expected.values()))
    sr = hd.sr.srread(out / "sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == COUNT
    assert len({g.tracking_identifier for g in groups}) == COUNT
