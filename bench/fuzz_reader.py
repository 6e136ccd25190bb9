"""Mutation fuzzing of the DICOM volume reader with real files from the shared data.

Each input is a small real series (three consecutive slices) in which one file is damaged:
bytes flipped, inserted, deleted or truncated, a header element replaced by a hostile value
(wrong VR-length strings, NaN/huge numbers, wrong pixel description, broken transfer syntax),
a decompression bomb (a deflated data set inflating to 64 MiB, an RLE or native header
declaring up to 65535 x 65535 pixels or 4096 frames), an invalid UID (``../``, ``/``, NUL,
10,000 characters, leading zeros, empty components) or an indexed value the store cannot hold
(NUL, over-long Modality or PatientID); see :mod:`bench.hostile_dicom`.
:func:`service.dicom.volume.read_volume` must either return a volume or raise a
:class:`service.errors.FedsegError`; any other exception is a crash.

Usage::

    python -m bench.fuzz_reader --n 10000 [--seed 0] [--data ../shared/data]
"""

from __future__ import annotations

import io
import random
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from bench.fuzz_cli import fuzz_main
from bench.hostile_dicom import (
    INVALID_UIDS,
    INVALID_VALUES,
    deflate_bomb,
    giant_rle,
    with_raw_value,
)
from service.dicom.volume import read_volume
from service.errors import FedsegError

#: Real series used as seeds: (folder under the data root, glob); small files keep runs fast.
SEED_SERIES: tuple[tuple[str, str], ...] = (
    ("sts-pet/ibsi_validation/dicom/STS_001/PET/image", "*.dcm"),
    ("suv-dro", "**/PT/*.dcm"),
    ("rtstruct-rtutils/tests/oriented_data", "*.dcm"),
    ("ct-gantry-tilt-ge/In/GE", "*.dcm"),
)

#: Header elements worth breaking: geometry, pixel description, rescale, identity.
TARGET_KEYWORDS: tuple[str, ...] = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "PixelData",
)

HOSTILE_VALUES: tuple[object, ...] = (
    "",
    "NaN",
    "inf",
    "-1",
    "0",
    "1e308",
    "65535",
    "abc",
    "1\\2",
    "1\\2\\3\\4\\5\\6\\7",
    "0\\0\\0\\0\\0\\0",
    "1\\0\\0\\1\\0\\0",
    "\x00\xff",
    "A" * 300,
)


@dataclass
class FuzzCase:
    """One fuzz input: the series files as bytes and what was done to them."""

    files: list[bytes]
    mutation: str


@dataclass
class FuzzReport:
    """Outcome counts of a fuzz run."""

    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: list[dict[str, str]] = field(default_factory=list)
    mutations: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """True when any input crashed the reader."""
        return bool(self.crashes)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON output."""
        return {
            "inputs": self.inputs,
            "accepted": self.accepted,
            "rejected_with_fedseg_error": self.rejected,
            "crashes": len(self.crashes),
            "crash_examples": self.crashes[:5],
            "mutations": dict(self.mutations),
            "seconds": round(self.seconds, 1),
        }


def seed_series(data_root: Path, per_series: int = 3) -> list[list[bytes]]:
    """Runs of ``per_series`` consecutive files from each seed series that exists."""
    seeds = []
    for folder, pattern in SEED_SERIES:
        files = sorted((data_root / folder).glob(pattern))
        if len(files) >= per_series:
            middle = len(files) // 2
            seeds.append([f.read_bytes() for f in files[middle : middle + per_series]])
    if not seeds:
        raise FileNotFoundError(f"no seed series found under {data_root}")
    return seeds


def _flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _header_flip(data: bytes, rng: random.Random) -> bytes:
    # Most of a file is pixels; damage the first 2 KiB where the header lives.
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(min(len(out), 2048))] = rng.randrange(256)
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def _insert(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]


def _delete(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 256) :]


def _element(data: bytes, rng: random.Random) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    keyword = rng.choice(TARGET_KEYWORDS)
    if rng.random() < 0.3:
        if keyword in ds:
            delattr(ds, keyword)
    else:
        _set_raw(ds, keyword, rng.choice(HOSTILE_VALUES), rng)
    if rng.random() < 0.1:
        syntaxes = [
            "1.2.840.10008.1.2.4.90",
            "1.2.840.10008.1.2.5",
            "1.2.3.4",
            "1.2.840.10008.1.2.2",
        ]
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(rng.choice(syntaxes))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def _set_raw(ds: Dataset, keyword: str, value: object, rng: random.Random) -> None:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        return
    if keyword == "PixelData":
        ds.PixelData = rng.randbytes(rng.choice([0, 1, 7, 100]))
        return
    vr = pydicom.datadict.dictionary_VR(tag)
    raw = str(value).encode("latin-1", errors="replace")
    if vr in ("US", "SS", "UL", "SL"):
        raw = rng.randbytes(rng.choice([0, 1, 2, 3, 4, 6]))
    # A RawDataElement keeps the hostile bytes as sent: what a broken sender would write.
    element = pydicom.dataelem.RawDataElement(
        pydicom.tag.Tag(tag), vr, len(raw), raw, 0, False, True
    )
    ds[tag] = element


#: Inflated sizes of the deflate bombs; the STOW-RS fuzzer's limit lies between them.
BOMB_INFLATED_BYTES: tuple[int, ...] = (4 * 1024**2, 64 * 1024**2)


def _bomb(data: bytes, rng: random.Random) -> bytes:
    # Small enough to build fast, large enough to cross the STOW-RS fuzzer's 16 MiB limit.
    kind = rng.choice(["deflate", "rle", "rle-frames", "native-header"])
    if kind == "deflate":
        return deflate_bomb(data, rng.choice(BOMB_INFLATED_BYTES), level=rng.choice([1, 9]))
    if kind == "rle":
        side = rng.choice([65535, 16384, 4096])
        return giant_rle(data, rows=side, columns=side)
    if kind == "rle-frames":
        return giant_rle(data, rows=512, columns=512, frames=rng.choice([2, 64, 4096]))
    # An uncompressed header that declares far more pixels than it carries.
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    ds.Rows, ds.Columns = rng.choice([(65535, 65535), (8192, 8192), (1, 65535)])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    return buffer.getvalue()


def _invalid_uid(data: bytes, rng: random.Random) -> bytes:
    keyword = rng.choice(["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"])
    return with_raw_value(data, keyword, rng.choice(INVALID_UIDS))


def _invalid_value(data: bytes, rng: random.Random) -> bytes:
    return with_raw_value(data, *rng.choice(INVALID_VALUES))


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "flip": _flip_bytes,
    "header-flip": _header_flip,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "element": _element,
    "bomb": _bomb,
    "invalid-uid": _invalid_uid,
    "invalid-vr": _invalid_value,
}


def mutate(seeds: Sequence[list[bytes]], rng: random.Random) -> FuzzCase:
    """One fuzz input: a seed series with one or two files damaged."""
    files = list(rng.choice(seeds))
    names = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        name = rng.choice(list(MUTATORS))
        index = rng.randrange(len(files))
        try:
            files[index] = MUTATORS[name](files[index], rng)
        except Exception:  # an unmutatable seed is not a reader crash
            name += "(skipped)"
        names.append(name)
    return FuzzCase(files, "+".join(names))


def run(data_root: Path, n: int, seed: int) -> FuzzReport:
    """Fuzz the reader with ``n`` inputs derived from seed ``seed``."""
    seeds = seed_series(data_root)
    rng = random.Random(seed)
    report = FuzzReport()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-reader-") as tmp:
        for _ in range(n):
            case = mutate(seeds, rng)
            report.inputs += 1
            report.mutations[case.mutation.split("+")[0]] += 1
            outcome = _outcome(case, Path(tmp))
            if outcome == "accepted":
                report.accepted += 1
            elif outcome == "rejected":
                report.rejected += 1
            else:
                report.crashes.append({"mutation": case.mutation, "traceback": outcome})
    report.seconds = time.perf_counter() - start
    return report


def _outcome(case: FuzzCase, folder: Path) -> str:
    paths = []
    for number, data in enumerate(case.files):
        path = folder / f"{number:03d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    try:
        read_volume(paths)
        return "accepted"
    except FedsegError:
        return "rejected"
    except Exception:  # anything else is the crash we are looking for
        return traceback.format_exc(limit=8)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: prints a JSON report; exit status 1 on any crash."""
    return fuzz_main(argv, __doc__.split("\n", 1)[0], run)


if __name__ == "__main__":
    raise SystemExit(main())
