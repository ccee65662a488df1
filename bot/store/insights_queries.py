"""The Insights page's queries: the questions asked since a time and everything that answered
or judged them, read into ``bot.insights.records`` (blocking; run it in a thread)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from bot.insights.metrics import Insights, compute_insights
from bot.insights.records import (
    EventRecord,
    PostRecord,
    QuestionRecord,
    ReplyRecord,
    VoteRecord,
)
from bot.settings import Settings
from bot.store.database import Database
from bot.store.models import (
    DashboardPostRow,
    QuestionRow,
    ReplyRow,
    RoomEventRow,
    SuggestionVoteRow,
)
from bot.store.newcomers import first_questions
from bot.timeutil import as_utc, utc_from_ms

_IN_BATCH = 500  # SQLite caps bound parameters per statement


@dataclass(frozen=True)
class LoadedRows:
    questions: list[QuestionRecord]
    replies: list[ReplyRecord]
    posts: list[PostRecord]
    votes: list[VoteRecord]
    events: list[EventRecord]

    def insights(self, settings: Settings, *, now: datetime, days: int) -> Insights:
        """The numbers of the ``days`` before ``now``, as the Insights page and the digest
        count them (the bot's own accounts, the reply threshold: from ``settings``)."""
        return compute_insights(
            self.questions,
            self.replies,
            self.posts,
            self.votes,
            self.events,
            bot_users=settings.bot_user_ids,
            now=now,
            days=days,
            reply_threshold=settings.reply_threshold,
        )


def _batches(values: Sequence[str]) -> list[list[str]]:
    return [list(values[i : i + _IN_BATCH]) for i in range(0, len(values), _IN_BATCH)]


OPEN_STATUSES = ("new", "suggested")


def open_questions(
    db: Database, *, limit: int = 20, regulars: Collection[str] = ()
) -> tuple[list[QuestionRecord], int]:
    """The oldest questions nobody has answered or dismissed (at most ``limit``), each marked
    first-time or not, and how many there are in all (blocking)."""
    with db.session() as s:
        total = s.scalar(
            select(func.count())
            .select_from(QuestionRow)
            .where(QuestionRow.status.in_(OPEN_STATUSES))
        )
        oldest = s.execute(
            select(QuestionRow, RoomEventRow.origin_ts)
            .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
            .where(QuestionRow.status.in_(OPEN_STATUSES))
            .order_by(RoomEventRow.origin_ts, QuestionRow.event_id)
            .limit(limit)
        ).all()
        questions = [_record(q, ts) for q, ts in oldest]
    first = first_questions(db, [q.event_id for q in questions], regulars=regulars)
    return [replace(q, first_question=q.event_id in first) for q in questions], int(total or 0)


def load_rows(db: Database, since: datetime, *, regulars: Collection[str] = ()) -> LoadedRows:
    """Questions asked since ``since`` and everything that answered or judged them (blocking).
    Each question says whether it was its asker's first in the room; ``regulars`` (the bot,
    the maintainers) never are."""
    since_ms = int(as_utc(since).timestamp() * 1000)
    with db.session() as s:
        questions = _questions(s, since_ms)
        replies: list[ReplyRecord] = []
        posts: list[PostRecord] = []
        votes: list[VoteRecord] = []
        events: dict[str, EventRecord] = {}
        for batch in _batches([q.event_id for q in questions]):
            replies += _replies(s, batch)
            posts += _posts(s, batch)
            votes += _votes(s, batch)
            # Answers come after their question, so older events need not be read.
            _read_events(
                s,
                and_(
                    RoomEventRow.origin_ts >= since_ms,
                    or_(RoomEventRow.relates_to.in_(batch), RoomEventRow.in_reply_to.in_(batch)),
                ),
                into=events,
            )
        reply_ids = [r.reply_event_id for r in replies if r.reply_event_id]
        for batch in _batches(reply_ids):
            _read_events(
                s,
                and_(RoomEventRow.event_type == "m.reaction", RoomEventRow.relates_to.in_(batch)),
                into=events,
            )
    first = first_questions(db, [q.event_id for q in questions], regulars=regulars)
    questions = [replace(q, first_question=q.event_id in first) for q in questions]
    return LoadedRows(questions, replies, posts, votes, list(events.values()))


def _questions(s: Session, since_ms: int) -> list[QuestionRecord]:
    rows = s.execute(
        select(QuestionRow, RoomEventRow.origin_ts)
        .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
        .where(RoomEventRow.origin_ts >= since_ms)
    ).all()
    return [_record(q, ts) for q, ts in rows]


def _replies(s: Session, question_ids: list[str]) -> list[ReplyRecord]:
    return [
        ReplyRecord(
            question_event_id=r.question_event_id,
            state=r.state,
            reply_event_id=r.reply_event_id,
            sent_at=as_utc(r.sent_at),
            posted_by=r.posted_by,
        )
        for r in s.scalars(select(ReplyRow).where(ReplyRow.question_event_id.in_(question_ids)))
    ]


def _posts(s: Session, question_ids: list[str]) -> list[PostRecord]:
    return [
        PostRecord(
            question_event_id=p.question_event_id,
            state=p.state,
            body=p.body,
            posted_by=p.posted_by,
            reply_event_id=p.reply_event_id,
            sent_at=as_utc(p.sent_at),
            created_at=as_utc(p.created_at),
        )
        for p in s.scalars(
            select(DashboardPostRow).where(DashboardPostRow.question_event_id.in_(question_ids))
        )
    ]


def _votes(s: Session, question_ids: list[str]) -> list[VoteRecord]:
    return [
        VoteRecord(v.question_event_id, v.user_name, v.vote)
        for v in s.scalars(
            select(SuggestionVoteRow).where(SuggestionVoteRow.question_event_id.in_(question_ids))
        )
    ]


def _read_events(
    s: Session, condition: ColumnElement[bool], *, into: dict[str, EventRecord]
) -> None:
    """The room events matching ``condition``, by id (an event two queries find is kept once);
    only a reaction's body is read (its key), a message's text is not needed."""
    for e in s.scalars(select(RoomEventRow).where(condition)):
        into[e.event_id] = EventRecord(
            event_id=e.event_id,
            sender=e.sender,
            origin_ts=e.origin_ts,
            event_type=e.event_type,
            msgtype=e.msgtype,
            body=e.body if e.event_type == "m.reaction" else "",
            rel_type=e.rel_type,
            relates_to=e.relates_to,
            in_reply_to=e.in_reply_to,
        )


def _record(q: QuestionRow, ts: int) -> QuestionRecord:
    return QuestionRecord(
        event_id=q.event_id,
        asker=q.asker,
        text=q.text,
        status=q.status,
        asked_at=utc_from_ms(ts),
        confidence=q.confidence,
        suggestion=q.suggestion,
        has_sources=bool(q.sources),
        answered_at=as_utc(q.answered_at),
        answered_by=q.answered_by,
        room_id=q.room_id,
    )
