"""The triage dashboard's queries: the queue, one question (its thread: ``question_thread``),
actions, votes, posts.

Each method is one need of a page, returning plain frozen dataclasses, so the web handlers
never hold a database session. Times come back as aware UTC datetimes whatever the backend.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, update

from bot.store.database import Database
from bot.store.models import (
    DashboardPostRow,
    QuestionRow,
    ReplyRow,
    RoomEventRow,
    SuggestionVoteRow,
    SyncStateRow,
    utcnow,
)
from bot.store.newcomers import first_question
from bot.store.question_thread import (
    ThreadMessage,
    read_thread,
)
from bot.timeutil import as_utc, utc_from_ms

# JSON in sync_state: when, trigger, ok, version or error, seconds (written by the service).
LAST_BUILD_KEY = "index.last_build"

STATUSES = ("new", "suggested", "answered_bot", "answered_person", "dismissed")
OPEN_STATUSES = ("new", "suggested")
ANSWERED_STATUSES = ("answered_bot", "answered_person")
# Who asked: "new" (their first message in the room, bot/store/newcomers.py) or "returning".
ASKERS = ("new", "returning")


@dataclass(frozen=True)
class QueueFilters:
    room: str | None = None
    statuses: tuple[str, ...] = OPEN_STATUSES
    min_confidence: float | None = None  # 0..1, inclusive
    max_confidence: float | None = None
    asker: str | None = None  # one of ASKERS, or None for everyone


@dataclass(frozen=True)
class QueueItem:
    event_id: str
    room_id: str
    asker: str
    text: str
    confidence: float | None
    status: str
    mentioned: bool
    created_at: datetime  # when the bot queued it: the order of the queue and of updates
    asked_at: datetime | None  # the message's own timestamp
    # What the dashboard needs to say what happened (bot/web/queue_view.py): the bot's
    # decision on the event, its own reply's state, the suggestion and the page it rests on.
    outcome: str | None = None
    reply_state: str | None = None
    suggestion: str | None = None
    top_title: str | None = None
    top_kind: str | None = None
    answered_by: str | None = None
    handled_by: str | None = None
    first_question: bool = False  # the asker had not posted in the room before


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class QuestionDetail:
    item: QueueItem
    suggestion: str | None
    sources: list[dict[str, Any]]
    index_version: str | None
    answered_by: str | None
    answered_at: datetime | None
    handled_by: str | None
    updated_at: datetime


@dataclass(frozen=True)
class VoteTally:
    up: int = 0
    down: int = 0
    mine: int = 0  # +1, -1 or 0 for the user asking


@dataclass(frozen=True)
class DashboardPost:
    id: int
    question_event_id: str
    room_id: str
    posted_by: str
    body: str
    txn_id: str
    state: str
    reply_event_id: str | None
    created_at: datetime
    sent_at: datetime | None = None


def _item(
    q: QuestionRow,
    origin_ts: int | None,
    outcome: str | None = None,
    reply_state: str | None = None,
    first: bool | None = False,
) -> QueueItem:
    top = q.sources[0] if q.sources and isinstance(q.sources[0], dict) else None
    top_title = str(top.get("title") or top.get("url") or "source") if top else None
    return QueueItem(
        event_id=q.event_id,
        room_id=q.room_id,
        asker=q.asker,
        text=q.text,
        confidence=q.confidence,
        status=q.status,
        mentioned=bool(q.mentioned),
        created_at=as_utc(q.created_at),
        asked_at=utc_from_ms(origin_ts) if origin_ts else None,
        outcome=outcome,
        reply_state=reply_state,
        suggestion=q.suggestion,
        top_title=top_title,
        top_kind=str(top.get("kind") or "page") if top else None,
        answered_by=q.answered_by,
        handled_by=q.handled_by,
        first_question=bool(first),
    )


def _post(row: DashboardPostRow) -> DashboardPost:
    return DashboardPost(
        id=row.id,
        question_event_id=row.question_event_id,
        room_id=row.room_id,
        posted_by=row.posted_by,
        body=row.body,
        txn_id=row.txn_id,
        state=row.state,
        reply_event_id=row.reply_event_id,
        created_at=as_utc(row.created_at),
        sent_at=as_utc(row.sent_at),
    )


class DashboardStore:
    def __init__(self, db: Database, *, regulars: Collection[str] = ()) -> None:
        """``regulars``: users never marked as first-time askers (the bot, the maintainers)."""
        self.db = db
        self.regulars = frozenset(regulars)

    # --- the queue -----------------------------------------------------------------------------
    def _conditions(self, filters: QueueFilters) -> list[ColumnElement[bool]]:
        """The filters, on ``questions`` joined with the question's ``room_events`` row."""
        found: list[ColumnElement[bool]] = []
        if filters.room:
            found.append(QuestionRow.room_id == filters.room)
        if filters.statuses:
            found.append(QuestionRow.status.in_(filters.statuses))
        if filters.min_confidence is not None:
            found.append(QuestionRow.confidence >= filters.min_confidence)
        if filters.max_confidence is not None:
            found.append(QuestionRow.confidence <= filters.max_confidence)
        if filters.asker == "new":
            found.append(first_question(self.regulars))
        elif filters.asker == "returning":
            found.append(~first_question(self.regulars))
        return found

    def _select(self) -> Select[QuestionRow, int, str | None, str | None, bool]:
        """Questions with what their rows show; whether each is a first question is a column
        of the same query (one correlated lookup per row read, no query per row)."""
        return (
            select(
                QuestionRow,
                RoomEventRow.origin_ts,
                RoomEventRow.outcome,
                ReplyRow.state,
                first_question(self.regulars).label("first_question"),
            )
            .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
            .outerjoin(ReplyRow, ReplyRow.question_event_id == QuestionRow.event_id)
        )

    def _items_query(
        self, filters: QueueFilters
    ) -> Select[QuestionRow, int, str | None, str | None, bool]:
        return (
            self._select()
            .where(*self._conditions(filters))
            .order_by(QuestionRow.created_at.desc(), RoomEventRow.origin_ts.desc())
        )

    def queue(self, filters: QueueFilters, *, page: int = 1, page_size: int = 25) -> QueuePage:
        """One page of questions, newest first."""
        page = max(1, page)
        with self.db.session() as s:
            total = s.scalar(
                select(func.count())
                .select_from(QuestionRow)
                .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
                .where(*self._conditions(filters))
            )
            rows = s.execute(
                self._items_query(filters).offset((page - 1) * page_size).limit(page_size)
            ).all()
            items = [_item(*row) for row in rows]
        return QueuePage(items, int(total or 0), page, page_size)

    def queued_after(
        self, filters: QueueFilters, after: datetime, *, limit: int = 100
    ) -> list[QueueItem]:
        """Questions queued after ``after`` (the newest the page already shows), newest first."""
        with self.db.session() as s:
            rows = s.execute(
                self._items_query(filters)
                .where(QuestionRow.created_at > as_utc(after))
                .limit(limit)
            ).all()
            return [_item(*row) for row in rows]

    def rooms(self) -> list[str]:
        with self.db.session() as s:
            return list(
                s.scalars(select(QuestionRow.room_id).distinct().order_by(QuestionRow.room_id))
            )

    # --- one question --------------------------------------------------------------------------
    def question(self, event_id: str) -> QuestionDetail | None:
        with self.db.session() as s:
            found = s.execute(self._select().where(QuestionRow.event_id == event_id)).first()
            if found is None:
                return None
            q, ts, outcome, reply_state, first = found
            return QuestionDetail(
                item=_item(q, ts, outcome, reply_state, first),
                suggestion=q.suggestion,
                sources=list(q.sources or []),
                index_version=q.index_version,
                answered_by=q.answered_by,
                answered_at=as_utc(q.answered_at),
                handled_by=q.handled_by,
                updated_at=as_utc(q.updated_at),
            )

    def thread(self, event_id: str) -> list[ThreadMessage]:
        """The question with its thread, in time order (``question_thread.read_thread``)."""
        with self.db.session() as s:
            return read_thread(s, event_id)

    # --- triage actions ------------------------------------------------------------------------
    def _set(self, event_id: str, **values: Any) -> bool:
        with self.db.session() as s:
            result = s.execute(
                update(QuestionRow)
                .where(QuestionRow.event_id == event_id)
                .values(updated_at=utcnow(), **values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def dismiss(self, event_id: str, user: str) -> bool:
        return self._set(event_id, status="dismissed", handled_by=user)

    def mark_answered(self, event_id: str, user: str) -> bool:
        """A maintainer says it is answered (somewhere the bot did not see, or by themselves)."""
        with self.db.session() as s:
            q = s.get(QuestionRow, event_id)
            if q is None:
                return False
            q.status = "answered_person"
            q.handled_by = user
            q.answered_at = q.answered_at or utcnow()
            q.updated_at = utcnow()
            return True

    def reopen(self, event_id: str, user: str) -> bool:
        with self.db.session() as s:
            q = s.get(QuestionRow, event_id)
            if q is None:
                return False
            q.status = "suggested" if q.sources else "new"
            q.handled_by = user
            q.updated_at = utcnow()
            return True

    def record_person_answer(self, event_id: str, who: str, *, at: datetime | None = None) -> bool:
        """Someone answered it (a post from the dashboard): it is theirs now, even after the
        bot's answer. The first person to answer keeps the credit."""
        with self.db.session() as s:
            q = s.get(QuestionRow, event_id)
            if q is None:
                return False
            if q.status != "answered_person" or not q.answered_by:
                q.answered_by = who
                q.answered_at = at or utcnow()
            q.status = "answered_person"
            q.updated_at = utcnow()
            return True

    def note_reply_in_thread(
        self,
        question_ids: Sequence[str],
        responder: str,
        at: datetime,
        *,
        asker: str | None = None,
    ) -> int:
        """A person other than the asker answered in a question's thread (the caller decides
        whose reply counts): it is answered unless it was dismissed or already answered.
        ``asker``: only questions that person asked (the asker accepted the reply). Returns
        how many questions changed."""
        if not question_ids:
            return 0
        conditions = [
            QuestionRow.event_id.in_(list(dict.fromkeys(question_ids))),
            QuestionRow.asker != responder,
            QuestionRow.status.in_(OPEN_STATUSES),
        ]
        if asker is not None:
            conditions.append(QuestionRow.asker == asker)
        with self.db.session() as s:
            result = s.execute(
                update(QuestionRow)
                .where(*conditions)
                .values(
                    status="answered_person",
                    answered_by=responder,
                    answered_at=at,
                    updated_at=utcnow(),
                )
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def record_bot_answer(self, event_id: str) -> None:
        """The bot's confident reply went out."""
        with self.db.session() as s:
            q = s.get(QuestionRow, event_id)
            if q is None:
                return
            q.status = "answered_bot"
            if not q.answered_by:
                q.answered_by = "bot"
                q.answered_at = utcnow()
            q.updated_at = utcnow()

    # --- votes on the suggestion ---------------------------------------------------------------
    def vote(self, event_id: str, user: str, value: int) -> None:
        """One vote per user and question; voting again changes it, 0 withdraws it."""
        with self.db.session() as s:
            row = s.get(SuggestionVoteRow, (event_id, user))
            if value == 0:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(SuggestionVoteRow(question_event_id=event_id, user_name=user, vote=value))
            else:
                row.vote = value
                row.created_at = utcnow()

    def votes(self, event_id: str, user: str | None = None) -> VoteTally:
        with self.db.session() as s:
            rows = s.execute(
                select(SuggestionVoteRow.user_name, SuggestionVoteRow.vote).where(
                    SuggestionVoteRow.question_event_id == event_id
                )
            ).all()
        return VoteTally(
            up=sum(1 for _, v in rows if v > 0),
            down=sum(1 for _, v in rows if v < 0),
            mine=next((v for u, v in rows if u == user), 0),
        )

    # --- replies posted from the dashboard -----------------------------------------------------
    def claim_post(
        self, question_event_id: str, room_id: str, posted_by: str, body: str
    ) -> DashboardPost:
        """Record a post before sending it. Its transaction id comes from the row id (stable
        for this post's retries) plus its creation time, so a database started afresh never
        reuses a transaction id the homeserver already de-duplicates against."""
        with self.db.session() as s:
            row = DashboardPostRow(
                question_event_id=question_event_id,
                room_id=room_id,
                posted_by=posted_by,
                body=body,
                txn_id="claiming-" + secrets.token_hex(16),
                state="pending",
            )
            s.add(row)
            s.flush()
            seed = f"{row.id}:{question_event_id}:{as_utc(row.created_at).isoformat()}"
            row.txn_id = (
                f"supportbot-post-{row.id}-" + hashlib.sha256(seed.encode()).hexdigest()[:24]
            )
            s.flush()
            return _post(row)

    def mark_post_sent(self, post_id: int, reply_event_id: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(DashboardPostRow)
                .where(DashboardPostRow.id == post_id)
                .values(state="sent", reply_event_id=reply_event_id, sent_at=utcnow())
            )

    def mark_post_failed(self, post_id: int, state: str = "failed") -> None:
        with self.db.session() as s:
            s.execute(
                update(DashboardPostRow).where(DashboardPostRow.id == post_id).values(state=state)
            )

    def posts(self, question_event_id: str) -> list[DashboardPost]:
        with self.db.session() as s:
            rows = s.scalars(
                select(DashboardPostRow)
                .where(DashboardPostRow.question_event_id == question_event_id)
                .order_by(DashboardPostRow.id)
            ).all()
            return [_post(r) for r in rows]

    # --- index page ----------------------------------------------------------------------------
    def last_build(self) -> dict[str, Any] | None:
        """The last index build the running bot made, as the service recorded it."""
        with self.db.session() as s:
            raw = s.scalar(select(SyncStateRow.value).where(SyncStateRow.key == LAST_BUILD_KEY))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return {"ok": False, "error": f"unreadable record: {raw[:200]}"}
        return data if isinstance(data, dict) else {"ok": False, "error": "unreadable record"}
