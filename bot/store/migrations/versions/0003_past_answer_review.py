"""Past answers a maintainer must review: pairs made only by the asker's reaction wait as
``pending`` until approved on the dashboard; only ``approved`` pairs are indexed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing pairs were trusted until now: they stay searchable ("approved"). A NOT NULL
    # column with a default is added in place on SQLite too (no table copy).
    op.add_column(
        "past_answers",
        sa.Column("review", sa.String(16), nullable=False, server_default="approved"),
    )
    op.add_column("past_answers", sa.Column("reviewed_by", sa.String(255), nullable=True))
    op.add_column(
        "past_answers", sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(op.f("ix_past_answers_review"), "past_answers", ["review"])


def downgrade() -> None:
    op.drop_index(op.f("ix_past_answers_review"), table_name="past_answers")
    # Pairs nobody approved must not become searchable by going back a version.
    op.execute(sa.text("DELETE FROM past_answers WHERE review <> 'approved'"))
    # Plain DROP COLUMN (SQLite >= 3.35), as in 0002.
    for column in ("reviewed_at", "reviewed_by", "review"):
        op.drop_column("past_answers", column)
