"""Alembic revision scripts (a package so wheels include them)."""
