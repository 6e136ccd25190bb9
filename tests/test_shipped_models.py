"""The bundles shipped in ``models/`` segment real and phantom studies into valid DICOM.

Issue #6's acceptance: ``segment_study`` (what ``fedseg segment`` runs) with the shipped bundles
on a phantom CT and MR, the raw whole-body PET of ``sts001-raw`` and the JPEG 2000 body CT of
``ct-totalseg-example`` writes SEG, RTSTRUCT and SR that ``dciodvfy`` accepts, and every found
structure is measured in both the SR and ``measurements.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from service.config import get_settings
from service.segment import SegmentOptions, segment_study
from tests.dciodvfy import assert_valid
from training.phantoms import PhantomConfig, PhantomModality, Size, generate_dataset

MODELS = Path(__file__).resolve().parent.parent / "models"
DataDir = Callable[[str], Path]


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms")
    config = PhantomConfig(
        sites=1,
        cases_per_site=1,
        seed=7,
        size=Size.SMALL,
        modalities=(PhantomModality.CT, PhantomModality.MR),
    )
    generate_dataset(out, config)
    return next(out.glob("site-*/case-*"))


def _segment_and_check(folder: Path, model: str, out: Path) -> list[str]:
    options = SegmentOptions(models=(str(MODELS / model),), device="cpu")
    result = segment_study([folder], out, options, get_settings())
    assert not result.failed
    (series,) = result.series
    assert series.present, f"{model} found nothing in {folder.name}"
    for name in ("seg.dcm", "rtstruct.dcm", "sr.dcm"):
        assert_valid(out / name)
    segments = json.loads((out / "measurements.json").read_text())["segments"]
    assert sorted(s["name"] for s in segments) == sorted(series.present)
    sr_text = pydicom.dcmread(out / "sr.dcm").to_json()
    for name in series.present:
        assert name in sr_text, f"{name} is not measured in the SR"
    return list(series.present)


def test_phantom_ct_with_ct_organs(phantom_case: Path, tmp_path: Path) -> None:
    present = _segment_and_check(phantom_case / "ct", "ct-organs", tmp_path)
    assert {"liver", "lung_left", "lung_right"} <= set(present)


def test_phantom_mr_with_mr_tumour(phantom_case: Path, tmp_path: Path) -> None:
    assert _segment_and_check(phantom_case / "mr", "mr-tumour", tmp_path) == ["tumour"]


def test_raw_whole_body_pet_with_pet_lesion(data_dir: DataDir, tmp_path: Path) -> None:
    present = _segment_and_check(data_dir("sts001-raw/FDG_PET/image"), "pet-lesion", tmp_path)
    assert present == ["lesion"]
    (segment,) = json.loads((tmp_path / "measurements.json").read_text())["segments"]
    assert segment["pet"]["suv_max"] > 7.9  # the tumour's SUVmax lies inside the component


def test_jpeg2000_body_ct_with_ct_organs(data_dir: DataDir, tmp_path: Path) -> None:
    folder = data_dir("ct-totalseg-example/tests/reference_files/example_ct_dicom")
    _segment_and_check(folder, "ct-organs", tmp_path)
