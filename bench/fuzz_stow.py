"""Mutation fuzzing of STOW-RS: damaged real instances and hostile multipart bodies.

Each input is one ``POST /dicomweb/studies`` to the real FastAPI app (in-process, through
Starlette's TestClient, with a sender token): a well-formed multipart body whose DICOM parts
are damaged like :mod:`bench.fuzz_reader` damages them (decompression bombs, invalid UIDs and
values included), a real series re-sent with its SOP Instance UIDs under another study or
patient, or a body whose framing is broken (wrong or missing boundary, wrong media types,
truncated, random bytes). The service
must answer every input with a 2xx or a 4xx; any 5xx (or an exception escaping the app) is a
failure.

Usage::

    python -m bench.fuzz_stow --n 10000 [--seed 0] [--data ../shared/data]
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from fastapi.testclient import TestClient

from bench.fuzz_cli import fuzz_main
from bench.fuzz_reader import mutate, seed_series
from service.api.main import create_app
from service.api.state import ServerState
from service.auth.tokens import Role, create_token
from service.config import Settings
from service.dicomweb.multipart import write_related


@dataclass(frozen=True)
class StowInput:
    """One request: body, content type and what was done to it."""

    body: bytes
    content_type: str
    mutation: str


@dataclass
class StowReport:
    """Status codes seen in a run."""

    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, case: StowInput, code: int, detail: str) -> None:
        """Count one answer; a 5xx (or -1: an exception escaped) is a failure."""
        self.inputs += 1
        self.statuses[code] += 1
        self.mutations[case.mutation] += 1
        if code >= 500 or code < 0:
            self.failures.append({"mutation": case.mutation, "status": code, "detail": detail})

    @property
    def failed(self) -> bool:
        """True when any input got a server error."""
        return bool(self.failures)

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON output."""
        return {
            "inputs": self.inputs,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": len(self.failures),
            "failure_examples": self.failures[:5],
            "mutations": dict(self.mutations),
            "seconds": round(self.seconds, 1),
        }


def _dicom_parts(seeds: Sequence[list[bytes]], rng: random.Random) -> StowInput:
    case = mutate(seeds, rng)
    body, content_type = write_related(case.files, "application/dicom")
    return StowInput(body, content_type, "dicom:" + case.mutation.split("+")[0])


def _framing(seeds: Sequence[list[bytes]], rng: random.Random) -> StowInput:
    files = list(rng.choice(seeds))
    body, content_type = write_related(files, "application/dicom")
    boundary = content_type.rsplit("boundary=", 1)[1]
    kind = rng.choice(
        ["no-boundary", "wrong-boundary", "media-type", "truncated", "random", "part-type",
         "empty", "no-closing", "header-garbage"]
    )  # fmt: skip
    if kind == "no-boundary":
        content_type = 'multipart/related; type="application/dicom"'
    elif kind == "wrong-boundary":
        content_type = content_type.replace(boundary, boundary[::-1])
    elif kind == "media-type":
        content_type = rng.choice(
            ["application/dicom", "application/json", "text/plain", "multipart/form-data; "
             f"boundary={boundary}", "", "multipart/related; boundary="]
        )  # fmt: skip
    elif kind == "truncated":
        body = body[: rng.randrange(len(body))]
    elif kind == "random":
        body = rng.randbytes(rng.randint(0, 4096))
    elif kind == "part-type":
        body = body.replace(b"application/dicom", rng.choice([b"text/plain", b"", b"\xff\xfe"]), 1)
    elif kind == "empty":
        body = b""
    elif kind == "no-closing":
        body = body[: body.rfind(b"--" + boundary.encode())]
    else:
        at = body.find(b"\r\n\r\n")
        body = body[:at] + b"\r\n" + rng.randbytes(rng.randint(1, 200)) + body[at:]
    return StowInput(body, content_type, "framing:" + kind)


def _identity_clash(seeds: Sequence[list[bytes]], rng: random.Random) -> StowInput:
    """A seed re-sent with its SOP Instance UIDs but another study, patient or both."""
    files = list(rng.choice(seeds))
    kind = rng.choice(["study", "patient", "study+patient", "changed"])
    index = rng.randrange(len(files))
    ds = pydicom.dcmread(io.BytesIO(files[index]), force=True)
    if "study" in kind:
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.{rng.randrange(1, 10**6)}"
    if "patient" in kind:
        ds.PatientID = f"FUZZ{rng.randrange(10**6)}"
    if kind == "changed":  # same study and patient: allowed, replaces the stored instance
        ds.SeriesDescription = f"fuzz {rng.randrange(10**6)}"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    files[index] = buffer.getvalue()
    body, content_type = write_related(files, "application/dicom")
    return StowInput(body, content_type, "identity:" + kind)


GENERATORS: tuple[Callable[[Sequence[list[bytes]], random.Random], StowInput], ...] = (
    _dicom_parts,
    _dicom_parts,
    _dicom_parts,
    _dicom_parts,
    _dicom_parts,
    _identity_clash,
    _framing,
    _framing,
)

#: The app's decoded-size limit in the fuzz run: between the bombs' 4 and 64 MiB, so both
#: sides of the check are exercised.
FUZZ_MAX_DECODED_BYTES = 16 * 1024**2


def make_input(seeds: Sequence[list[bytes]], rng: random.Random) -> StowInput:
    """One STOW-RS request: five in eight with damaged DICOM (including decompression bombs and
    invalid UIDs or values), one in eight re-using stored SOP Instance UIDs in another study or
    for another patient, two in eight with broken framing."""
    return rng.choice(GENERATORS)(seeds, rng)


def fuzz_client(
    client: TestClient, token: str, seeds: Sequence[list[bytes]], n: int, seed: int
) -> StowReport:
    """Send ``n`` fuzzed STOW-RS requests through ``client``."""
    rng = random.Random(seed)
    report = StowReport()
    start = time.perf_counter()
    for _ in range(n):
        case = make_input(seeds, rng)
        headers = {"Authorization": f"Bearer {token}"}
        if case.content_type:
            headers["Content-Type"] = case.content_type
        try:
            response = client.post("/dicomweb/studies", content=case.body, headers=headers)
            report.record(case, response.status_code, response.text[:300])
        except Exception as exc:  # an exception escaping the app is a failure
            report.record(case, -1, repr(exc)[:300])
    report.seconds = time.perf_counter() - start
    return report


def sender_token(state: ServerState) -> str:
    """Create a sender token in the app's database."""
    with state.factory() as session, session.begin():
        token, _ = create_token(session, "fuzz-sender", Role.SENDER)
    return token


def run(data_root: Path, n: int, seed: int) -> StowReport:
    """Fuzz STOW-RS of a fresh app in a temporary state folder."""
    seeds = seed_series(data_root)
    with tempfile.TemporaryDirectory(prefix="fuzz-stow-") as tmp:
        settings = Settings(
            state_dir=Path(tmp) / "state",
            model_store=Path(tmp) / "models",
            shipped_models=Path(tmp) / "shipped",
            quiet_period_s=3600,
            max_upload_bytes=20_000_000,
            max_decoded_instance_bytes=FUZZ_MAX_DECODED_BYTES,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            token = sender_token(client.app.state.server)  # type: ignore[attr-defined]
            return fuzz_client(client, token, seeds, n, seed)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: prints a JSON report; exit status 1 on any 5xx."""
    return fuzz_main(argv, __doc__.split("\n", 1)[0], run)


if __name__ == "__main__":
    raise SystemExit(main())
