"""Hostile DICOM instances built from a real one: decompression bombs, invalid UIDs and values.

Used by the fuzzers (:mod:`bench.fuzz_reader`, :mod:`bench.fuzz_stow`) and by the regression
tests of issue 17 (items 3, 11 and 13). Every builder takes the bytes of a valid Part 10 file
and returns the bytes of the hostile variant; none holds the inflated data in memory.
"""

from __future__ import annotations

import io
import struct
import zlib

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, RLELossless

#: Invalid UIDs a sender (or an attacker) can put in SOP/Study/Series Instance UID.
INVALID_UIDS: tuple[str, ...] = (
    "../../../etc",
    "1.2/3.4",
    "1.2.3\x004",
    "1" * 10_000,
    "1." * 32 + "1",  # 65 characters
    "1.02.3",  # a leading zero in a component
    "1..2",  # an empty component
    ".1.2",
    "1.2.",
    "1.2.abc",
    "1.2\\1.3",  # two values
)

#: Indexed values beyond what the store holds: (keyword, value).
INVALID_VALUES: tuple[tuple[str, str], ...] = (
    ("Modality", "M" * 20),
    ("Modality", "C\x00T"),
    ("PatientID", "P" * 65),
    ("PatientID", "ID\x00X"),
    ("PatientName", "Doe\x00^Jane"),
    ("StudyDescription", "d" * 5000),
    ("SeriesNumber", "1\x002"),
)


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=True)


def _save(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def with_values(data: bytes, enforce_file_format: bool = True, **values: str) -> bytes:
    """``data`` with each keyword set to its value through pydicom (validated like any writer)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=enforce_file_format)
    return buffer.getvalue()


def with_raw_value(data: bytes, keyword: str, value: str) -> bytes:
    """``data`` with ``keyword`` set to ``value`` exactly as given (no validation, no padding)."""
    ds = _read(data)
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown keyword {keyword!r}")
    raw = value.encode("latin-1", errors="replace")
    vr = dictionary_VR(tag)
    ds[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, False, True)
    if keyword == "SOPInstanceUID" and getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3")  # the meta is not under test
    return _save(ds)


def deflate_bomb(data: bytes, inflated_bytes: int, level: int = 9) -> bytes:
    """A Deflated Explicit VR Little Endian file whose data set inflates to ``inflated_bytes``.

    The header of ``data`` is kept (its Rows and Columns too); its pixel data is replaced by
    ``inflated_bytes`` of zeros, compressed as they are generated (1 MiB at a time).
    """
    ds = _read(data)
    meta = ds.file_meta
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    if "PixelData" in ds:
        del ds.PixelData
    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, ds)
    pixels = max(0, inflated_bytes - len(header.getvalue()) - 12) & ~1
    # (7FE0,0010) OB: tag, VR, 2 reserved bytes, 4-byte length.
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixels)
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    meta_buffer = DicomBytesIO()
    meta_buffer.is_little_endian, meta_buffer.is_implicit_VR = True, False
    write_file_meta_info(meta_buffer, meta, enforce_standard=True)
    out.write(meta_buffer.getvalue())
    out.write(compressor.compress(header.getvalue() + element))
    chunk = b"\0" * (1 << 20)
    left = pixels
    while left > 0:
        out.write(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= len(chunk)
    out.write(compressor.flush())
    return out.getvalue()


def giant_rle(data: bytes, rows: int = 65535, columns: int = 65535, frames: int = 1) -> bytes:
    """An RLE Lossless file of a few kilobytes that declares ``rows`` x ``columns`` pixels."""
    ds = _read(data)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel = 1
    if frames > 1:
        ds.NumberOfFrames = frames
    # One RLE segment (PS3.5 G.3): a 64-byte header, then a replicate run of zeros.
    segment_header = struct.pack("<16I", 1, 64, *([0] * 14))
    ds.PixelData = encapsulate([segment_header + b"\x81\x00" * 1024] * frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _save(ds)
