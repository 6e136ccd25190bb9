"""The volume reader refuses files that declare more pixels than it may decode (issue 17,
item 3), from their headers alone; found by bench/fuzz_reader.py (MemoryError, 151 inputs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hostile_dicom import giant_rle
from service.config import Settings
from service.dicom.volume import read_volume
from service.errors import DicomInputError
from tests.service.jobs.support import write_ct_study


def test_a_series_of_giant_rle_files_is_refused_before_decoding(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")
    for path in files:
        path.write_bytes(giant_rle(path.read_bytes()))
    with pytest.raises(DicomInputError, match=r"65535 x 65535 pixels, 8589672450 bytes decoded"):
        read_volume(files)


def test_many_frames_count_and_the_limit_is_the_setting(tmp_path: Path) -> None:
    files = write_ct_study(tmp_path / "ct")  # 4 slices of 16 x 12
    assert read_volume(files).array.shape == (16, 12, 4)
    tight = Settings(max_decoded_instance_bytes=16 * 12 * 2 - 1)
    with pytest.raises(DicomInputError, match="FEDSEG_MAX_DECODED_INSTANCE_BYTES"):
        read_volume(files, tight)
    assert read_volume(files, Settings(max_decoded_instance_bytes=16 * 12 * 2)).array.size
