"""Persistence of the inference server: SQLAlchemy models, engine and Alembic migrations."""
