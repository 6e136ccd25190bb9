"""Alembic migrations of the server database (applied by service.db.migrate.upgrade)."""
