"""Revision files, loaded by Alembic by path (names start with the revision id)."""
