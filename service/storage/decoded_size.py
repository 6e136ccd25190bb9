"""How much memory an instance will take once decoded, checked before it is stored.

A few kilobytes can declare gigabytes: an RLE instance of 65535 × 65535 pixels, or a deflated
data set (transfer syntax 1.2.840.10008.1.2.1.99) whose zeros inflate a thousandfold. Both
would be stored and then exhaust memory in the job. Ingest therefore refuses an instance when

- Rows × Columns × NumberOfFrames × SamplesPerPixel × BitsAllocated / 8 exceeds the limit, or
- its deflated data set inflates beyond the limit. This is measured by inflating in bounded
  chunks that are discarded, and stops as soon as the limit is passed, so the check itself
  never holds the inflated data set (pydicom would inflate all of it at once to read the
  header).
"""

from __future__ import annotations

import io
import zlib

import pydicom
from pydicom.filereader import _read_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from service.storage.errors import InstanceRejectedError

#: The default of ``FEDSEG_MAX_DECODED_INSTANCE_BYTES``: 1 GiB. A CT, PET or MR instance is far
#: below it (an enhanced CT of 1,000 frames of 512 x 512 is 500 MiB); the job holds several
#: float copies of what it decodes, so a larger default would let one instance take gigabytes.
DEFAULT_MAX_DECODED_BYTES = 1024**3

#: Output of one inflate step; what the check holds in memory at a time.
_INFLATE_CHUNK = 1024 * 1024

_LIMIT_HINT = "raise FEDSEG_MAX_DECODED_INSTANCE_BYTES if such instances are expected"


def deflated_dataset_offset(data: bytes) -> int | None:
    """Where the deflated data set of a Part 10 file starts; None when it is not deflated."""
    if data[128:132] != b"DICM":
        return None
    stream = io.BytesIO(data)
    stream.seek(132)
    try:
        meta = _read_file_meta_info(stream)
        syntax = meta.get("TransferSyntaxUID")  # converted here: a damaged value raises
    except Exception:  # a damaged meta group: pydicom cannot see a deflated syntax either
        return None
    if syntax != DeflatedExplicitVRLittleEndian:
        return None
    return stream.tell()


def inflated_size(deflated: bytes, limit: int) -> int:
    """Bytes that ``deflated`` (raw DEFLATE) inflates to, counting stopped once past ``limit``.

    Raises
    ------
    InstanceRejectedError
        If the stream is not valid DEFLATE data.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pending = deflated
    try:
        while total <= limit and not inflater.eof:
            out = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(out)
            if not out and not pending:  # the input ended before the stream did
                break
    except zlib.error as exc:
        raise InstanceRejectedError(
            f"the deflated data set cannot be inflated ({exc}); the file is damaged"
        ) from exc
    return total


def check_inflated_size(data: bytes, limit: int) -> None:
    """Refuse a deflated instance whose data set inflates beyond ``limit`` bytes.

    Raises
    ------
    InstanceRejectedError
        If the inflated data set would be larger than ``limit``, or is damaged.
    """
    start = deflated_dataset_offset(data)
    if start is None:
        return
    size = inflated_size(data[start:], limit)
    if size > limit:
        raise InstanceRejectedError(
            f"the deflated data set ({len(data) - start} bytes) inflates to more than the "
            f"{limit}-byte limit for one decoded instance; {_LIMIT_HINT}"
        )


def _count(ds: pydicom.Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword)  # converted on first access: a damaged value raises here
        if value is None or value == "":
            return default
        number = int(value)
    except Exception as exc:  # pydicom raises many types for a damaged value
        raise InstanceRejectedError(f"{keyword} is not a single whole number") from exc
    if number < 0:
        raise InstanceRejectedError(f"{keyword} is negative")
    return number


def decoded_pixel_bytes(ds: pydicom.Dataset) -> int:
    """Bytes the pixel data of ``ds`` declares once decoded (0 without Rows and Columns).

    Raises
    ------
    InstanceRejectedError
        If one of the pixel description attributes is not a non-negative whole number.
    """
    if "Rows" not in ds or "Columns" not in ds:  # membership does not convert the value
        return 0
    rows, columns = _count(ds, "Rows", 0), _count(ds, "Columns", 0)
    frames = _count(ds, "NumberOfFrames", 1)
    samples = _count(ds, "SamplesPerPixel", 1)
    bits = _count(ds, "BitsAllocated", 8)
    return (rows * columns * frames * samples * bits + 7) // 8


def check_decoded_size(ds: pydicom.Dataset, limit: int) -> None:
    """Refuse an instance whose declared pixel data exceeds ``limit`` bytes once decoded.

    Raises
    ------
    InstanceRejectedError
        If the declared size is over ``limit`` or cannot be computed.
    """
    size = decoded_pixel_bytes(ds)
    if size > limit:
        raise InstanceRejectedError(
            f"the pixel data would take {size} bytes decoded (Rows {_count(ds, 'Rows', 0)} x "
            f"Columns {_count(ds, 'Columns', 0)} x {_count(ds, 'NumberOfFrames', 1)} frames x "
            f"{_count(ds, 'SamplesPerPixel', 1)} samples x {_count(ds, 'BitsAllocated', 8)} "
            f"bits), more than the {limit}-byte limit for one instance; {_LIMIT_HINT}"
        )
