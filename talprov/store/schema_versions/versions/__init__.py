"""The store's schema versions, one Alembic script each, oldest first."""
