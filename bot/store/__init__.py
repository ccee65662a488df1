"""Persistence: all SQL (SQLAlchemy 2 models, Alembic migrations, one module per concern)."""
