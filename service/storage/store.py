"""A content-addressed store of DICOM files.

A file lives at ``<root>/<sha[:2]>/<sha[2:4]>/<sha>.dcm``: the path is a function of the
bytes, so a re-sent identical instance lands on the same file, concurrent writers of the same
content cannot corrupt each other (write to a temporary name, then an atomic rename), and a
file's integrity can be checked against its name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredObject:
    """A file in the store: its digest, path and size."""

    sha256: str
    path: Path
    size: int


@dataclass(frozen=True)
class InstanceStore:
    """Content-addressed files under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the object with this digest lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.dcm"

    def put(self, data: bytes) -> StoredObject:
        """Store ``data`` (idempotent) and return where it is."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return StoredObject(digest, target, len(data))

    def put_file(self, source: Path) -> StoredObject:
        """Store a copy of a file."""
        return self.put(source.read_bytes())

    def delete(self, sha256: str) -> bool:
        """Remove an object; True when it existed."""
        path = self.path_for(sha256)
        if not path.exists():
            return False
        path.unlink()
        return True
