"""Several workers, the maintainers' dashboard and the local room: event claims, who answered
a question, dashboard posts, suggestion votes, users, web sessions, login throttling and the
local room's timeline.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # All new columns are nullable: existing rows need no value, so SQLite adds them in place.
    with op.batch_alter_table("room_events") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("claimed_until", _TIMESTAMP, nullable=True))
    # Threads are looked up by relation (dashboard, insights): no full scans as the room grows.
    op.create_index("ix_room_events_relates_to", "room_events", ["relates_to"])
    op.create_index("ix_room_events_in_reply_to", "room_events", ["in_reply_to"])
    with op.batch_alter_table("questions") as batch:
        batch.add_column(sa.Column("answered_at", _TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("answered_by", sa.String(255), nullable=True))
        batch.add_column(sa.Column("handled_by", sa.String(255), nullable=True))

    op.create_table(
        "dashboard_posts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("question_event_id", sa.String(255), nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("posted_by", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("txn_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reply_event_id", sa.String(255), nullable=True),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("sent_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("txn_id"),
    )
    op.create_index(
        op.f("ix_dashboard_posts_question_event_id"), "dashboard_posts", ["question_event_id"]
    )

    op.create_table(
        "suggestion_votes",
        sa.Column("question_event_id", sa.String(255), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("vote", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("question_event_id", "user_name"),
    )

    op.create_table(
        "users",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("last_login_at", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )

    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("csrf_token", sa.String(128), nullable=False),
        sa.Column("created_at", _TIMESTAMP, nullable=False),
        sa.Column("expires_at", _TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["user_name"], ["users.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(op.f("ix_web_sessions_user_name"), "web_sessions", ["user_name"])
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"])

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", _TIMESTAMP, nullable=False),
        sa.Column("locked_until", _TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )

    op.create_table(
        "local_room_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("room_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("sender", sa.String(255), nullable=False),
        sa.Column("txn_id", sa.String(255), nullable=True),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("origin_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("event_id"),
        sa.UniqueConstraint("txn_id"),
    )
    op.create_index(op.f("ix_local_room_events_room_id"), "local_room_events", ["room_id"])


def downgrade() -> None:
    op.drop_index("ix_room_events_in_reply_to", table_name="room_events")
    op.drop_index("ix_room_events_relates_to", table_name="room_events")
    for name in (
        "local_room_events",
        "login_throttle",
        "web_sessions",
        "users",
        "suggestion_votes",
        "dashboard_posts",
    ):
        op.drop_table(name)
    # Plain DROP COLUMN (SQLite >= 3.35), not batch mode: batch would copy and drop
    # room_events, and with foreign keys on, dropping it cascades into questions.
    for table, column in (
        ("questions", "handled_by"),
        ("questions", "answered_by"),
        ("questions", "answered_at"),
        ("room_events", "claimed_until"),
        ("room_events", "claimed_by"),
    ):
        op.drop_column(table, column)
