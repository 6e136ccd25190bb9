"""Unpacking an uploaded model bundle archive (zip or tar) safely.

Only the three bundle files are accepted, at the top level or inside one folder; links,
devices, absolute or ``..`` paths are refused, and the uncompressed size is bounded before
anything is written (a zip bomb is refused from its directory, a tar while streaming).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from service.errors import ModelBundleError

BUNDLE_FILES = frozenset({"model.onnx", "manifest.json", "checksums.sha256"})


def _name(member: str) -> str:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or len(path.parts) > 2:
        raise ModelBundleError(f"archive member {member!r} has an unsafe or nested path")
    if path.name not in BUNDLE_FILES:
        raise ModelBundleError(
            f"archive member {member!r} is not one of {', '.join(sorted(BUNDLE_FILES))}"
        )
    return path.name


def _unzip(data: bytes, target: Path, limit: int) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > limit:
            raise ModelBundleError(f"bundle unpacks to more than {limit} bytes")
        for member in members:
            name = _name(member.filename)
            with archive.open(member) as source, (target / name).open("wb") as out:
                copied = 0
                while chunk := source.read(1 << 20):
                    copied += len(chunk)
                    if copied > member.file_size or copied > limit:
                        raise ModelBundleError("zip member is larger than its directory says")
                    out.write(chunk)


def _untar(data: bytes, target: Path, limit: int) -> None:
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():
                raise ModelBundleError(f"archive member {member.name!r} is not a regular file")
            name = _name(member.name)
            total += member.size
            if total > limit:
                raise ModelBundleError(f"bundle unpacks to more than {limit} bytes")
            source = archive.extractfile(member)
            if source is None:
                raise ModelBundleError(f"cannot read archive member {member.name!r}")
            (target / name).write_bytes(source.read())


def unpack_bundle(data: bytes, target: Path, limit: int) -> Path:
    """Unpack a zip or tar(.gz) bundle into ``target``; returns the bundle folder.

    Raises
    ------
    ModelBundleError
        If the archive is unreadable, unsafe, too large or lacks a bundle file.
    """
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            _unzip(data, target, limit)
        else:
            _untar(data, target, limit)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelBundleError(f"model upload is not a readable zip or tar archive: {exc}") from exc
    missing = sorted(name for name in BUNDLE_FILES if not (target / name).is_file())
    if missing:
        raise ModelBundleError(f"bundle archive lacks {', '.join(missing)}")
    return target
