"""Attacks on intake through STOW-RS (issue 17: items 1, 3, 11, 13, 17; issue 19: item 5).

Each attack is one ``POST /dicomweb/studies`` to the real FastAPI app (in-process, sender
token, default settings), with the hostile instance first and a good instance of a new study
second, so the answer shows whether the good part survives the bad one. Before the attacks a
victim study (a small CT) is stored and one of its instances is re-ingested as a fedseg result.
The report gives, per attack: the HTTP status, parts stored and refused, the refusal text, the
``Warning`` header, whether the victim's instances are unchanged, whether a RetrieveURL holds
``..``, and the process's peak resident memory after it.

The script only uses the public ingest and HTTP interfaces, so the same file measures an older
version (copy it and :mod:`bench.hostile_dicom` into that checkout).

Usage::

    python -m bench.ingest_probe [--database-url postgresql+psycopg://...] [--bombs]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import resource
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from fastapi.testclient import TestClient

from bench.hostile_dicom import (
    INVALID_UIDS,
    INVALID_VALUES,
    deflate_bomb,
    giant_rle,
    with_raw_value,
    with_values,
)
from service.api.main import create_app
from service.api.state import ServerState
from service.auth.tokens import Role, create_token
from service.config import Settings
from service.db.models import Instance, InstanceOrigin
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicomweb.multipart import write_related
from service.storage.ingest import ingest

FAILED, REFERENCED, COMMENT, URL = "00081198", "00081199", "00000902", "00081190"


def _changed(data: bytes, **values: str) -> bytes:
    # The probe also sends files whose meta no longer matches (blank UIDs): write them as given.
    return with_values(data, enforce_file_format=False, **values)


def _ct(folder: Path, seed: str) -> list[bytes]:
    import numpy as np

    values = np.full((16, 12, 4), -100.0, dtype=np.float32)
    spec = SeriesSpec(modality="CT", uid_seed=seed, series_description="probe CT")
    return [p.read_bytes() for p in write_series(folder, values, np.diag([1.5, 1.5, 3, 1]), spec)]


def _attacks(victim: list[bytes], spare: list[bytes], bombs: bool) -> dict[str, bytes]:
    attacks = {
        "SOP UID of the victim, new study and patient": _changed(
            victim[0], StudyInstanceUID="1.2.826.0.1.66.1", PatientID="ATTACKER"
        ),
        "SOP UID of the victim's result, new study": _changed(
            victim[3], StudyInstanceUID="1.2.826.0.1.66.2", PatientID="ATTACKER"
        ),
        "SOP UID of the victim's result, same study": _changed(victim[3], Modality="CT"),
        "victim re-sent, changed, same study": _changed(victim[1], SeriesDescription="fixed"),
        "blank Study/Series UIDs": _changed(spare[0], StudyInstanceUID="", SeriesInstanceUID=""),
    }
    for value in INVALID_UIDS:
        label = repr(value) if len(value) < 40 else f"{len(value)} characters"
        attacks[f"StudyInstanceUID {label}"] = with_raw_value(spare[1], "StudyInstanceUID", value)
    for keyword, value in INVALID_VALUES:
        label = repr(value) if len(value) < 20 else f"{len(value)} characters"
        attacks[f"{keyword} {label}"] = with_raw_value(spare[2], keyword, value)
    if bombs:
        attacks["RLE declaring 65535 x 65535"] = giant_rle(spare[3])
        attacks["deflated, inflating to 1.1 GiB"] = deflate_bomb(spare[3], 1100 * 1024**2)
    return attacks


def _intact(state: ServerState, victim: list[bytes], digests: dict[str, str]) -> bool:
    with state.factory() as session:
        for data in victim:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            row = session.get(Instance, str(ds.SOPInstanceUID))
            if row is None or row.study_instance_uid != str(ds.StudyInstanceUID):
                return False
            if row.sha256 != digests[row.sop_instance_uid] and row.origin == "result":
                return False
    return True


def _good(spare: list[bytes], number: int) -> bytes:
    return _changed(
        spare[3],
        StudyInstanceUID=f"1.2.826.0.1.88.{number}",
        SeriesInstanceUID=f"1.2.826.0.1.88.{number}.1",
        SOPInstanceUID=f"1.2.826.0.1.88.{number}.1.1",
    )


def _post(client: TestClient, token: str, parts: list[bytes]) -> Any:
    body, content_type = write_related(parts, "application/dicom")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    return client.post("/dicomweb/studies", content=body, headers=headers)


def _row(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    failed = (body.get(FAILED) or {}).get("Value", []) if isinstance(body, dict) else []
    stored = (body.get(REFERENCED) or {}).get("Value", []) if isinstance(body, dict) else []
    urls = [str((item.get(URL) or {}).get("Value", [""])[0]) for item in stored]
    return {
        "status": response.status_code,
        "stored": len(stored),
        "refused": len(failed),
        "reason": [str((f.get(COMMENT) or {}).get("Value", [""])[0])[:160] for f in failed],
        "warning": response.headers.get("warning", "")[:200],
        "dotdot_in_url": any(".." in u for u in urls),
    }


def run(database_url: str, bombs: bool) -> list[dict[str, Any]]:
    """Store a victim, then send every attack; one report row per attack."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="ingest-probe-") as tmp:
        root = Path(tmp)
        victim, spare = _ct(root / "victim", "victim"), _ct(root / "spare", "spare")
        settings = Settings(
            state_dir=root / "state",
            model_store=root / "models",
            shipped_models=root / "shipped",
            quiet_period_s=3600,
            database_url=database_url,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            state: ServerState = client.app.state.server  # type: ignore[attr-defined]
            with state.factory() as session, session.begin():
                token, _ = create_token(session, "probe-sender", Role.SENDER)
            assert _post(client, token, victim[:3]).status_code == 200
            with state.factory() as session, session.begin():  # stands for the result SEG
                ingest(session, state.store, victim[3], "job:probe", InstanceOrigin.RESULT)
            with state.factory() as session:
                digests = {r.sop_instance_uid: r.sha256 for r in session.query(Instance)}
            for number, (name, data) in enumerate(_attacks(victim, spare, bombs).items()):
                response = _post(client, token, [data, _good(spare, number)])
                peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
                row = {"attack": name, "bytes": len(data)} | _row(response)
                row |= {"victim_intact": _intact(state, victim, digests), "peak_rss_mib": peak_mib}
                rows.append(row)
    return rows


def _got_in(row: dict[str, Any]) -> bool:
    """An attack got in when it was not refused, broke the request or moved the victim."""
    if row["attack"].startswith("victim re-sent"):  # allowed: a same-study replacement
        return row["status"] >= 500 or not row["victim_intact"]
    return row["refused"] == 0 or row["status"] >= 500 or not row["victim_intact"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: prints the report as JSON lines; exit 1 when any attack got in."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", default="", help="empty: SQLite in a temporary folder")
    parser.add_argument("--bombs", action="store_true", help="also send the two bombs (slow)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    rows = run(args.database_url, args.bombs)
    got_in = [r for r in rows if _got_in(r)]
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"attacks": len(rows), "got_in": len(got_in)}))
    return 1 if got_in else 0


if __name__ == "__main__":
    raise SystemExit(main())
