"""The volume reader refuses damaged real DICOM with a FedsegError, never a crash.

A smoke-sized run of ``bench/fuzz_reader.py`` (the 10,000-input run is recorded in
docs/reliability.md), plus the crashes that fuzzing found, as regressions.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz_reader import _outcome, mutate, seed_series
from service.dicom.volume import read_volume
from service.errors import DicomInputError

DataDir = Callable[[str], Path]


@pytest.fixture(scope="module")
def seeds(data_root: Path) -> list[list[bytes]]:
    return seed_series(data_root)


def test_smoke_fuzz_has_no_crash(
    seeds: list[list[bytes]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    outcomes: list[str] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def one(rng: random.Random) -> None:
        case = mutate(seeds, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = _outcome(case, folder)
        assert outcome in ("accepted", "rejected"), f"{case.mutation}:\n{outcome}"
        outcomes.append(outcome)

    one()
    # Both branches were exercised: the mutations are neither all harmless nor all fatal.
    assert "rejected" in outcomes and "accepted" in outcomes


def _series(
    data_dir: DataDir, tmp_path: Path, edit: Callable[[pydicom.Dataset], None]
) -> list[Path]:
    files = sorted(data_dir("sts-pet/ibsi_validation/dicom/STS_001/PET/image").glob("*.dcm"))[:3]
    out = []
    for number, path in enumerate(files):
        ds = pydicom.dcmread(path)
        if number == 1:
            edit(ds)
        target = tmp_path / path.name
        ds.save_as(target)
        out.append(target)
    return out


def _raw(keyword: str, vr: str, value: bytes) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        assert tag is not None
        ds[tag] = pydicom.dataelem.RawDataElement(
            pydicom.tag.Tag(tag), vr, len(value), value, 0, False, True
        )

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_raw("RescaleSlope", "DS", b"NaN "), "not finite"),
        (_raw("RescaleIntercept", "DS", b"abc "), "could not be interpreted"),
        (_raw("SliceThickness", "DS", b"\x00\xff"), "could not be interpreted"),
        (_raw("ImagePositionPatient", "DS", b"1\\inf\\3 "), "not finite"),
        (_raw("SamplesPerPixel", "US", b"\x01\x02\x03"), r"\(0028,0002\)"),
        (_raw("Rows", "US", b"\x00\x00"), "0x"),
        (_raw("PixelSpacing", "DS", b"0\\0 "), "PixelSpacing"),
    ],
    ids=["nan-slope", "text-intercept", "binary-thickness", "inf-position", "odd-samples",
         "zero-rows", "zero-spacing"],
)  # fmt: skip
def test_damaged_header_values_are_refused_clearly(
    data_dir: DataDir, tmp_path: Path, edit: Callable[[pydicom.Dataset], None], message: str
) -> None:
    paths = _series(data_dir, tmp_path, edit)
    with pytest.raises(DicomInputError, match=message) as raised:
        read_volume(paths)
    assert paths[1].name in str(raised.value) or "series" in str(raised.value)
