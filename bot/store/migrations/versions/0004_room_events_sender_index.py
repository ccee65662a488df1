"""First-time askers: an index on room_events (room_id, sender, origin_ts), so "had this sender
posted in this room before this question?" (bot/store/newcomers.py) is one index seek per
question on the queue, not a walk through all of the sender's messages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain CREATE INDEX: writes to room_events wait while it is built (seconds for a million
    # events); `supportbot db upgrade` runs before the bot starts, so nothing is writing.
    op.create_index(
        "ix_room_events_room_sender_ts", "room_events", ["room_id", "sender", "origin_ts"]
    )


def downgrade() -> None:
    op.drop_index("ix_room_events_room_sender_ts", table_name="room_events")
