"""Alembic's entry point: run the migrations on the connection that ``Database`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from bot.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    # Migrations always run through Database.upgrade(), which holds the cross-process lock;
    # a bare `alembic upgrade` would bypass it.
    raise RuntimeError(
        "run migrations with `supportbot db upgrade` (bot.store.database.Database.upgrade)"
    )

context.configure(
    connection=connection,
    # Only for comparing the models with a migrated database (tests/store/test_migrations.py).
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table where needed.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
