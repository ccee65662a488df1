"""The schema before migrations: corpus, embedding cache, room events, questions, replies,
past answers (what ``Base.metadata.create_all`` made until then).

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Databases made by that ``create_all`` have no ``alembic_version`` table; ``Database.upgrade``
runs this revision on them too, so each table is created only where it is missing (older
versions of the bot made only some of them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True)


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("documents"):
        op.create_table(
            "documents",
            sa.Column("doc_id", sa.String(512), nullable=False),
            sa.Column("title", sa.String(1024), nullable=False),
            sa.Column("url", sa.String(2048), nullable=False),
            sa.Column("source", sa.String(128), nullable=False),
            sa.Column("source_version", sa.String(128), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("aliases", sa.JSON(), nullable=False),
            sa.Column("content_hash", sa.String(64), nullable=False),
            sa.Column("updated_at", _TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("doc_id"),
        )
        op.create_index(op.f("ix_documents_source"), "documents", ["source"])

    if _missing("chunks"):
        op.create_table(
            "chunks",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("doc_id", sa.String(512), nullable=False),
            sa.Column("ordinal", sa.Integer(), nullable=False),
            sa.Column("section", sa.Text(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.ForeignKeyConstraint(["doc_id"], ["documents.doc_id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(op.f("ix_chunks_doc_id"), "chunks", ["doc_id"])
        op.create_index(op.f("ix_chunks_hash"), "chunks", ["hash"])

    if _missing("embedding_cache"):
        op.create_table(
            "embedding_cache",
            sa.Column("model", sa.String(512), nullable=False),
            sa.Column("chunk_hash", sa.String(64), nullable=False),
            sa.Column("dim", sa.Integer(), nullable=False),
            sa.Column("vector", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", _TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("model", "chunk_hash"),
        )

    if _missing("room_events"):
        op.create_table(
            "room_events",
            sa.Column("event_id", sa.String(255), nullable=False),
            sa.Column("room_id", sa.String(255), nullable=False),
            sa.Column("sender", sa.String(255), nullable=False),
            sa.Column("origin_ts", sa.BigInteger(), nullable=False),
            sa.Column("event_type", sa.String(128), nullable=False),
            sa.Column("msgtype", sa.String(64), nullable=True),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("formatted_body", sa.Text(), nullable=True),
            sa.Column("rel_type", sa.String(64), nullable=True),
            sa.Column("relates_to", sa.String(255), nullable=True),
            sa.Column("in_reply_to", sa.String(255), nullable=True),
            sa.Column("mentions", sa.JSON(), nullable=False),
            sa.Column("origin", sa.String(16), nullable=False),
            sa.Column("received_at", _TIMESTAMP, nullable=False),
            sa.Column("handled_at", _TIMESTAMP, nullable=True),
            sa.Column("outcome", sa.String(64), nullable=True),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index(op.f("ix_room_events_room_id"), "room_events", ["room_id"])
        op.create_index(op.f("ix_room_events_sender"), "room_events", ["sender"])
        op.create_index(op.f("ix_room_events_handled_at"), "room_events", ["handled_at"])

    if _missing("sync_state"):
        op.create_table(
            "sync_state",
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("updated_at", _TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )

    if _missing("questions"):
        op.create_table(
            "questions",
            sa.Column("event_id", sa.String(255), nullable=False),
            sa.Column("room_id", sa.String(255), nullable=False),
            sa.Column("asker", sa.String(255), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("mentioned", sa.Boolean(), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("confidence", sa.Float(), nullable=True),
            sa.Column("suggestion", sa.Text(), nullable=True),
            sa.Column("sources", sa.JSON(), nullable=False),
            sa.Column("index_version", sa.String(128), nullable=True),
            sa.Column("created_at", _TIMESTAMP, nullable=False),
            sa.Column("updated_at", _TIMESTAMP, nullable=False),
            sa.ForeignKeyConstraint(["event_id"], ["room_events.event_id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("event_id"),
        )
        op.create_index(op.f("ix_questions_room_id"), "questions", ["room_id"])
        op.create_index(op.f("ix_questions_status"), "questions", ["status"])

    if _missing("replies"):
        op.create_table(
            "replies",
            sa.Column("question_event_id", sa.String(255), nullable=False),
            sa.Column("room_id", sa.String(255), nullable=False),
            sa.Column("txn_id", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("reply_event_id", sa.String(255), nullable=True),
            sa.Column("body", sa.Text(), nullable=False),
            sa.Column("formatted_body", sa.Text(), nullable=False),
            sa.Column("thread_root", sa.String(255), nullable=False),
            sa.Column("posted_by", sa.String(255), nullable=False),
            sa.Column("created_at", _TIMESTAMP, nullable=False),
            sa.Column("sent_at", _TIMESTAMP, nullable=True),
            sa.PrimaryKeyConstraint("question_event_id"),
            sa.UniqueConstraint("txn_id"),
        )
        op.create_index(op.f("ix_replies_state"), "replies", ["state"])

    if _missing("past_answers"):
        op.create_table(
            "past_answers",
            sa.Column("key", sa.String(512), nullable=False),
            sa.Column("question", sa.Text(), nullable=False),
            sa.Column("answer", sa.Text(), nullable=False),
            sa.Column("url", sa.String(2048), nullable=False),
            sa.Column("title", sa.String(1024), nullable=True),
            sa.Column("asked_by", sa.String(255), nullable=True),
            sa.Column("answered_by", sa.String(255), nullable=True),
            sa.Column("created_at", _TIMESTAMP, nullable=True),
            sa.Column("source", sa.String(64), nullable=False),
            sa.Column("established_by", sa.String(64), nullable=False),
            sa.Column("room_id", sa.String(255), nullable=True),
            sa.Column("question_event_id", sa.String(255), nullable=True),
            sa.Column("answer_event_id", sa.String(255), nullable=True),
            sa.Column("updated_at", _TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("key"),
        )
        op.create_index(op.f("ix_past_answers_source"), "past_answers", ["source"])
        op.create_index(op.f("ix_past_answers_room_id"), "past_answers", ["room_id"])
        op.create_index(
            op.f("ix_past_answers_answer_event_id"), "past_answers", ["answer_event_id"]
        )


def downgrade() -> None:
    # Children before parents (foreign keys).
    for name in (
        "past_answers",
        "replies",
        "questions",
        "sync_state",
        "room_events",
        "embedding_cache",
        "chunks",
        "documents",
    ):
        op.drop_table(name)
