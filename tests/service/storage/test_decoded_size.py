"""The decoded size of an instance is bounded at ingest (issue 17, item 3).

A 3.5 KB RLE instance declaring 65535 x 65535 pixels and a deflated data set that inflates
a thousandfold are refused before they are stored; the inflation is measured in bounded
chunks and stops at the limit.
"""

from __future__ import annotations

import io
import resource
import zlib
from pathlib import Path

import pydicom
import pytest

from bench.hostile_dicom import deflate_bomb, giant_rle, with_raw_value
from service.config import Settings
from service.db.models import Instance
from service.storage.decoded_size import (
    DEFAULT_MAX_DECODED_BYTES,
    decoded_pixel_bytes,
    deflated_dataset_offset,
    inflated_size,
)
from service.storage.errors import InstanceRejectedError
from service.storage.ingest import ingest
from service.storage.store import InstanceStore
from tests.service.jobs.support import sqlite_db, write_ct_study


@pytest.fixture
def ct(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in write_ct_study(tmp_path / "ct")]


def test_the_setting_defaults_to_1_gib() -> None:
    assert Settings().max_decoded_instance_bytes == DEFAULT_MAX_DECODED_BYTES == 1024**3


def test_a_giant_rle_instance_is_refused_under_the_default_limit(
    tmp_path: Path, ct: list[bytes]
) -> None:
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    giant = giant_rle(ct[0])
    assert len(giant) < 4_000
    with factory() as session, pytest.raises(InstanceRejectedError, match="8589672450 bytes"):
        ingest(session, store, giant, "test")
    with factory() as session:
        assert session.query(Instance).count() == 0
    assert not list(store.root.rglob("*.dcm"))
    with factory() as session, session.begin():  # the same header at 512 x 512 is stored
        ingest(session, store, giant_rle(ct[0], rows=512, columns=512), "test")


def test_many_frames_count_like_many_pixels(ct: list[bytes]) -> None:
    ds = pydicom.dcmread(io.BytesIO(giant_rle(ct[0], rows=4, columns=4, frames=3)))
    assert decoded_pixel_bytes(ds) == 4 * 4 * 3 * 2
    for value in ("abc", "2\\3", "-1"):
        damaged = with_raw_value(giant_rle(ct[0], frames=2), "NumberOfFrames", value)
        ds = pydicom.dcmread(io.BytesIO(damaged), stop_before_pixels=True)
        with pytest.raises(InstanceRejectedError, match="NumberOfFrames is"):
            decoded_pixel_bytes(ds)


def test_damaged_pixel_description_values_are_refusals_not_errors(
    tmp_path: Path, ct: list[bytes]
) -> None:
    # Found by bench/fuzz_stow.py: a 3-byte US Rows raised BytesLengthException (500).
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    for keyword in ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel"):
        damaged = bytearray(ct[0])
        tag = {
            "Rows": b"\x28\x00\x10\x00",
            "Columns": b"\x28\x00\x11\x00",
            "BitsAllocated": b"\x28\x00\x00\x01",
            "SamplesPerPixel": b"\x28\x00\x02\x00",
        }
        at = damaged.find(tag[keyword] + b"US\x02\x00")
        assert at > 0, keyword
        damaged[at + 6 : at + 8] = b"\x03\x00"  # length 3: no whole number of US values
        damaged[at + 8 : at + 8] = b"\x00"
        with factory() as session, pytest.raises(InstanceRejectedError, match=keyword):
            ingest(session, store, bytes(damaged), "test")


def test_a_deflate_bomb_is_refused_after_inflating_no_more_than_the_limit(
    tmp_path: Path, ct: list[bytes]
) -> None:
    bomb = deflate_bomb(ct[0], 256 * 1024**2)
    start = deflated_dataset_offset(bomb)
    assert start is not None and len(bomb) < 300_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counted = inflated_size(bomb[start:], 16 * 1024**2)
    assert 16 * 1024**2 < counted <= 17 * 1024**2  # stopped one chunk past the limit
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    with factory() as session, pytest.raises(InstanceRejectedError, match="inflates to more"):
        ingest(session, store, bomb, "test", max_decoded_bytes=16 * 1024**2)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 128 * 1024, f"peak memory grew {grown_kib} KiB for a 256 MiB bomb"
    assert not list(store.root.rglob("*.dcm"))


def test_a_small_deflated_instance_is_stored_and_a_damaged_one_refused(
    tmp_path: Path, ct: list[bytes]
) -> None:
    deflated = deflate_bomb(ct[0], 4096)
    _, factory = sqlite_db(tmp_path)
    store = InstanceStore(tmp_path / "store")
    with factory() as session, session.begin():
        assert ingest(session, store, deflated, "test").new
    start = deflated_dataset_offset(deflated)
    assert start is not None
    damaged = deflated[:start] + zlib.compress(b"x")[::-1]
    with factory() as session, pytest.raises(InstanceRejectedError, match="damaged"):
        ingest(session, store, damaged, "test")


def test_uncompressed_or_unreadable_meta_is_not_inflated(ct: list[bytes]) -> None:
    assert deflated_dataset_offset(ct[0]) is None
    assert deflated_dataset_offset(b"not dicom") is None
    # Found by bench/fuzz_stow.py: an unknown VR for TransferSyntaxUID raised (500).
    bomb = bytearray(deflate_bomb(ct[0], 4096))
    at = bomb.find(b"\x02\x00\x10\x00UI")
    bomb[at + 4 : at + 6] = b"\x55\xca"
    assert deflated_dataset_offset(bytes(bomb)) is None
