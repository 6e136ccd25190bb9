from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.db.models import Base
from tests.service.jobs.support import postgres_schema


def _assert_schema_matches_models(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)  # a second start is a no-op
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)


def test_sqlite_migrations_match_models_and_use_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'state' / 'fedseg.db'}")
    _assert_schema_matches_models(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_postgresql_migrations_match_models() -> None:
    with postgres_schema() as url:
        _assert_schema_matches_models(make_engine(url))
