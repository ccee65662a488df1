"""SQLAlchemy 2.x tables for the indexed corpus and the embedding cache."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.timeutil import as_utc


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored and returned in UTC and always zone-aware, on every backend.

    PostgreSQL keeps ``timestamptz`` and returns it in the session's time zone; SQLite keeps
    no zone at all, returns naive values and would store an aware value's local wall time.
    Normalising here means callers compare and subtract times the same way on both: what comes
    back is UTC-aware, and a naive value going in is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return as_utc(value)


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    """A citable document as of the latest successful build."""

    __tablename__ = "documents"

    doc_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    title: Mapped[str] = mapped_column(String(1024))
    url: Mapped[str] = mapped_column(String(2048))
    source: Mapped[str] = mapped_column(String(128), index=True)
    source_version: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    chunks: Mapped[list[ChunkRow]] = relationship(
        back_populates="document", cascade="all, delete-orphan", order_by="ChunkRow.ordinal"
    )


class ChunkRow(Base):
    __tablename__ = "chunks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    doc_id: Mapped[str] = mapped_column(
        ForeignKey("documents.doc_id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    section: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), index=True)

    document: Mapped[DocumentRow] = relationship(back_populates="chunks")


class EmbeddingCacheRow(Base):
    """One embedding per (model, chunk text hash): a rebuild re-embeds only changed text."""

    __tablename__ = "embedding_cache"

    model: Mapped[str] = mapped_column(String(512), primary_key=True)
    chunk_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoomEventRow(Base):
    """Every message event the bot has seen, written once, before anything acts on it."""

    __tablename__ = "room_events"
    # "Did this sender post in this room before?" (bot/store/newcomers.py): one index seek per
    # question instead of a walk through all of the sender's messages in every room.
    __table_args__ = (Index("ix_room_events_room_sender_ts", "room_id", "sender", "origin_ts"),)

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    sender: Mapped[str] = mapped_column(String(255), index=True)
    origin_ts: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(128))
    msgtype: Mapped[str | None] = mapped_column(String(64), nullable=True)
    body: Mapped[str] = mapped_column(Text, default="")
    formatted_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    rel_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Indexed: a question's thread (the dashboard, insights, learning) is looked up by these.
    relates_to: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    in_reply_to: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    mentions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # "live" (from /sync), "gap" (back-filled after a limited timeline), "history" (first join)
    origin: Mapped[str] = mapped_column(String(16), default="live")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Several workers share one database: a worker claims an event before handling it; a claim
    # whose lease ran out (the worker died) may be taken over by another worker.
    claimed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SyncStateRow(Base):
    """Small key/value state: the /sync token, per-room first-join markers."""

    __tablename__ = "sync_state"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QuestionRow(Base):
    """A question seen in a room, with what the bot would answer: the maintainers' queue."""

    __tablename__ = "questions"

    event_id: Mapped[str] = mapped_column(
        ForeignKey("room_events.event_id", ondelete="CASCADE"), primary_key=True
    )
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    asker: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    mentioned: Mapped[bool] = mapped_column(Boolean, default=False)
    # new / suggested / answered_bot / answered_person / dismissed
    status: Mapped[str] = mapped_column(String(32), default="new", index=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    suggestion: Mapped[str | None] = mapped_column(Text, nullable=True)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    index_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When and by whom it was first answered: "bot", or the person (Matrix id / dashboard user)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The maintainer who marked it answered or dismissed on the dashboard
    handled_by: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ReplyRow(Base):
    """At most one bot reply per question: the primary key is the question's event id.

    Claimed (``pending``) before the send, confirmed (``sent``) after; a pending claim found
    at start-up is re-sent with the same transaction id, which the homeserver de-duplicates.
    """

    __tablename__ = "replies"

    question_event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255))
    txn_id: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    reply_event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    body: Mapped[str] = mapped_column(Text)
    formatted_body: Mapped[str] = mapped_column(Text)
    thread_root: Mapped[str] = mapped_column(String(255))
    posted_by: Mapped[str] = mapped_column(String(255), default="bot")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PastAnswerRow(Base):
    """A question and the answer the community accepted: mined from the room or imported.

    ``key`` is the document id in the index: ``thread:<question event id>`` for pairs mined
    from the room, the thread's URL for imported ones.
    """

    __tablename__ = "past_answers"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2048))
    title: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    asked_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # where it came from: "room", "import:jsonl", "import:gitter"
    source: Mapped[str] = mapped_column(String(64), index=True)
    # how the answer was established: maintainer-thread, maintainer-reply, accepted-reaction,
    # maintainer-correction, imported
    established_by: Mapped[str] = mapped_column(String(64))
    room_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    question_event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    answer_event_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # approved (indexed), pending (made by the asker's reaction alone: a maintainer approves it
    # on the dashboard first), rejected (kept, so the same reaction does not propose it again)
    review: Mapped[str] = mapped_column(
        String(16), default="approved", server_default="approved", index=True
    )
    reviewed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DashboardPostRow(Base):
    """A reply a maintainer posted from the dashboard (as the bot), one row per post.

    Claimed before the send like ``ReplyRow``; the transaction id is stable per post, so a
    retried send is de-duplicated by the homeserver.
    """

    __tablename__ = "dashboard_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    question_event_id: Mapped[str] = mapped_column(String(255), index=True)
    room_id: Mapped[str] = mapped_column(String(255))
    posted_by: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    txn_id: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending/sent/rejected
    reply_event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SuggestionVoteRow(Base):
    """A maintainer's 👍 (+1) or 👎 (-1) on the bot's suggestion for a question."""

    __tablename__ = "suggestion_votes"

    question_event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    vote: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UserRow(Base):
    """A dashboard account (a maintainer). The password is stored only as a scrypt hash."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebSessionRow(Base):
    """A signed-in browser. Only a hash of the cookie's token is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LoginThrottleRow(Base):
    """Failed logins per key (a user name or a client address), for throttling."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LocalRoomEventRow(Base):
    """The embedded local room's timeline, Matrix-shaped, so restarts keep the conversation.

    ``seq`` orders the timeline and doubles as the local room's sync token.
    """

    __tablename__ = "local_room_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    sender: Mapped[str] = mapped_column(String(255))
    txn_id: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    origin_ts: Mapped[int] = mapped_column(BigInteger)


class DigestRow(Base):
    """One maintainers' digest: claimed by the worker that posts it, so a period gets one post
    however many workers run (``bot/store/digests.py``). ``period`` is the scheduled time it
    stands for ("2026-11-30T08:00Z"), or "manual:..." for ``supportbot digest --post``."""

    __tablename__ = "digests"

    period: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending/posted/failed
    claimed_by: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    room_id: Mapped[str | None] = mapped_column(String(255), nullable=True)  # None: dashboard
    event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
