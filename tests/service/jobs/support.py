"""Shared helpers of the server tests: databases, a small CT study and a real SEG runner.

Imported as ``from tests.service.jobs.support import ...``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from service.config import Settings
from service.db.engine import make_engine, session_factory
from service.db.migrate import upgrade
from service.dicom.image_writer import SeriesSpec, write_series
from service.dicom.volume import read_volume
from service.inference.bundle import save_bundle
from service.inference.store import ModelStore
from service.jobs.queue import QueuePolicy, enqueue
from service.results.provenance import AlgorithmIdentity
from service.results.seg_writer import write_seg
from service.storage.ingest import ingest
from service.storage.store import InstanceStore
from tests.requirements import missing
from tests.service.inference.conftest import pointwise_model, threshold_manifest

POSTGRES_URL = os.environ.get(
    "FEDSEG_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def sqlite_db(folder: Path) -> tuple[Engine, sessionmaker[Session]]:
    """A migrated SQLite database in ``folder``."""
    engine = make_engine(f"sqlite:///{folder / 'fedseg.db'}")
    upgrade(engine)
    return engine, session_factory(engine)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards; skips without a server."""
    try:
        admin = make_engine(POSTGRES_URL)
        with admin.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:
        message = f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__})"
        missing(message)
    schema = f"fedseg_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def write_ct_study(folder: Path, seed: str = "ct", slices: int = 4) -> list[Path]:
    """A small CT series (bright cube in a dark field), deterministic for a given seed."""
    values = np.full((16, 12, slices), -100.0, dtype=np.float32)
    values[4:10, 3:8, 1 : slices - 1] = 300.0
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    spec = SeriesSpec(modality="CT", uid_seed=seed, series_description="phantom CT")
    return write_series(folder, values, affine, spec)


def threshold_seg_runner(inputs: Sequence[Path], out_dir: Path, progress: object = None) -> None:
    """A real (tiny) segmentation: HU > 100 as 'liver', written as seg.dcm + measurements."""
    volume = read_volume(list(inputs))
    labels = (volume.array > 100).astype(np.uint16)
    result = write_seg(volume, labels, None, AlgorithmIdentity("threshold", "1.0"))
    result.dataset.save_as(out_dir / "seg.dcm", enforce_file_format=True)
    (out_dir / "measurements.json").write_text(json.dumps({"voxels": int(labels.sum())}))
    if callable(progress):
        progress("segment", 1.0)


def queued_ct_job(
    folder: Path, policy: QueuePolicy
) -> tuple[sessionmaker[Session], InstanceStore, str]:
    """A database and store under ``folder`` holding a phantom CT study and its queued job.

    Returns the session factory, the store and the job id.
    """
    _, factory = sqlite_db(folder)
    store = InstanceStore(folder / "store")
    files = write_ct_study(folder / "ct")
    with factory() as session, session.begin():
        for path in files:
            ingest(session, store, path.read_bytes(), "test")
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    job, _ = enqueue(factory, study, "key", policy)
    return factory, store, job.id


def install_ct_threshold(
    settings: Settings,
    folder: Path,
    name: str = "ct-threshold",
    spacing: tuple[float, float, float] = (1.5, 1.5, 3.0),
) -> None:
    """Install a CT bundle segmenting values above 90 HU (a 1×1×1 convolution), on ``spacing``."""
    manifest = threshold_manifest(
        name=name,
        modality="CT",
        normalisation={"kind": "ct-window", "low": 0.0, "high": 200.0},
        spacing=spacing,
    )
    model = pointwise_model(np.array([[-1.0], [1.0]]), np.array([0.45, -0.45]))
    bundle = save_bundle(folder / f"bundle-{name}", model, manifest)
    ModelStore(roots=(settings.model_store,)).install(bundle.path)
