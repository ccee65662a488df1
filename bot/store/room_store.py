"""The room side's persistence: events written once, the sync token, questions, replies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update

from bot.chat import RoomEvent
from bot.mining import Change, Remove, StoredPair, UpdateText, Upsert
from bot.store.database import Database
from bot.store.models import (
    PastAnswerRow,
    QuestionRow,
    ReplyRow,
    RoomEventRow,
    SyncStateRow,
    utcnow,
)
from bot.store.past_answers import upsert_in

SYNC_TOKEN_KEY = "matrix.sync_token"
_IN_BATCH = 500


def _to_row(e: RoomEvent) -> RoomEventRow:
    return RoomEventRow(
        event_id=e.event_id,
        room_id=e.room_id,
        sender=e.sender,
        origin_ts=e.origin_ts,
        event_type=e.event_type,
        msgtype=e.msgtype,
        body=e.body,
        formatted_body=e.formatted_body,
        rel_type=e.rel_type,
        relates_to=e.relates_to,
        in_reply_to=e.in_reply_to,
        mentions=list(e.mentions),
        origin=e.origin,
    )


def _from_row(r: RoomEventRow) -> RoomEvent:
    return RoomEvent(
        room_id=r.room_id,
        event_id=r.event_id,
        sender=r.sender,
        origin_ts=r.origin_ts,
        event_type=r.event_type,
        msgtype=r.msgtype,
        body=r.body,
        formatted_body=r.formatted_body,
        rel_type=r.rel_type,
        relates_to=r.relates_to,
        in_reply_to=r.in_reply_to,
        mentions=tuple(r.mentions or ()),
        origin=r.origin,
    )


@dataclass(frozen=True)
class ReplyClaim:
    """What the answerer should do about a reply: send it, or it was already sent."""

    state: str  # "new" (just claimed), "pending" (claimed earlier, not confirmed), "sent"
    txn_id: str
    body: str
    formatted_body: str
    thread_root: str
    room_id: str


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sync state ----------------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        with self.db.session() as s:
            row = s.get(SyncStateRow, key)
            return row.value if row else None

    def set_state(self, key: str, value: str) -> None:
        with self.db.session() as s:
            s.merge(SyncStateRow(key=key, value=value, updated_at=utcnow()))

    def sync_token(self) -> str | None:
        return self.get_state(SYNC_TOKEN_KEY)

    def persist_batch(self, events: Sequence[RoomEvent], next_token: str | None) -> list[RoomEvent]:
        """Write unseen events and the new sync token in one transaction; return the unseen.

        Idempotent on event id: a replayed batch (crash after the server sent it, before the
        token was stored) inserts nothing and yields nothing to act on twice.
        """
        fresh: list[RoomEvent] = []
        with self.db.session() as s:
            ids = list(dict.fromkeys(e.event_id for e in events))
            known: set[str] = set()
            for start in range(0, len(ids), _IN_BATCH):
                batch = ids[start : start + _IN_BATCH]
                known.update(
                    s.scalars(select(RoomEventRow.event_id).where(RoomEventRow.event_id.in_(batch)))
                )
            for event in events:
                if event.event_id in known:
                    continue
                known.add(event.event_id)
                s.add(_to_row(event))
                fresh.append(event)
            if next_token is not None:
                s.merge(SyncStateRow(key=SYNC_TOKEN_KEY, value=next_token, updated_at=utcnow()))
        return fresh

    def known(self, event_id: str) -> bool:
        with self.db.session() as s:
            return s.get(RoomEventRow, event_id) is not None

    def unhandled(self, limit: int = 10_000) -> list[RoomEvent]:
        """Events persisted but not yet acted on (a crash or shutdown came between)."""
        with self.db.session() as s:
            rows = s.scalars(
                select(RoomEventRow)
                .where(RoomEventRow.handled_at.is_(None))
                .order_by(RoomEventRow.origin_ts, RoomEventRow.received_at)
                .limit(limit)
            ).all()
            return [_from_row(r) for r in rows]

    def mark_handled(self, event_id: str, outcome: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(RoomEventRow)
                .where(RoomEventRow.event_id == event_id)
                .values(handled_at=utcnow(), outcome=outcome[:64])
            )

    def event(self, event_id: str) -> RoomEvent | None:
        with self.db.session() as s:
            row = s.get(RoomEventRow, event_id)
            return _from_row(row) if row else None

    # --- questions (the triage queue) ----------------------------------------------------------
    def save_question(
        self,
        event: RoomEvent,
        text: str,
        *,
        mentioned: bool,
        confidence: float | None,
        suggestion: str | None,
        sources: list[dict[str, Any]],
        index_version: str | None,
        status: str,
    ) -> None:
        with self.db.session() as s:
            s.merge(
                QuestionRow(
                    event_id=event.event_id,
                    room_id=event.room_id,
                    asker=event.sender,
                    text=text,
                    mentioned=mentioned,
                    status=status,
                    confidence=confidence,
                    suggestion=suggestion,
                    sources=sources,
                    index_version=index_version,
                    updated_at=utcnow(),
                )
            )

    def set_question_status(self, event_id: str, status: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(QuestionRow)
                .where(QuestionRow.event_id == event_id)
                .values(status=status, updated_at=utcnow())
            )

    def question(self, event_id: str) -> QuestionRow | None:
        with self.db.session() as s:
            return s.get(QuestionRow, event_id)

    # --- replies: at most one per question -----------------------------------------------------
    def claim_reply(
        self,
        *,
        question_event_id: str,
        room_id: str,
        txn_id: str,
        body: str,
        formatted_body: str,
        thread_root: str,
        posted_by: str = "bot",
    ) -> ReplyClaim:
        """Record the intent to reply before sending; the primary key makes it unique."""
        with self.db.session() as s:
            row = s.get(ReplyRow, question_event_id)
            if row is None:
                row = ReplyRow(
                    question_event_id=question_event_id,
                    room_id=room_id,
                    txn_id=txn_id,
                    state="pending",
                    body=body,
                    formatted_body=formatted_body,
                    thread_root=thread_root,
                    posted_by=posted_by,
                )
                s.add(row)
                state = "new"
            else:
                state = row.state
            return ReplyClaim(
                state=state,
                txn_id=row.txn_id,
                body=row.body,
                formatted_body=row.formatted_body,
                thread_root=row.thread_root,
                room_id=row.room_id,
            )

    def mark_reply_sent(self, question_event_id: str, reply_event_id: str) -> None:
        with self.db.session() as s:
            s.execute(
                update(ReplyRow)
                .where(ReplyRow.question_event_id == question_event_id)
                .values(state="sent", reply_event_id=reply_event_id, sent_at=utcnow())
            )

    def mark_reply_rejected(self, question_event_id: str) -> None:
        """The server refused it for good: keep the record (one attempt per question)."""
        with self.db.session() as s:
            s.execute(
                update(ReplyRow)
                .where(ReplyRow.question_event_id == question_event_id)
                .values(state="rejected")
            )

    def reply(self, question_event_id: str) -> ReplyRow | None:
        with self.db.session() as s:
            return s.get(ReplyRow, question_event_id)

    def pending_replies(self) -> list[ReplyRow]:
        with self.db.session() as s:
            return list(s.scalars(select(ReplyRow).where(ReplyRow.state == "pending")).all())

    def reply_event_ids(self) -> set[str]:
        with self.db.session() as s:
            return {e for e in s.scalars(select(ReplyRow.reply_event_id)) if e is not None}

    def feedback(self, question_event_id: str) -> dict[str, int]:
        """Reactions (👍, 👎, ...) people put on the bot's reply to this question, by key."""
        with self.db.session() as s:
            reply_id = s.scalar(
                select(ReplyRow.reply_event_id).where(
                    ReplyRow.question_event_id == question_event_id
                )
            )
            if reply_id is None:
                return {}
            keys = s.scalars(
                select(RoomEventRow.body).where(
                    RoomEventRow.event_type == "m.reaction", RoomEventRow.relates_to == reply_id
                )
            ).all()
        counts: dict[str, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        return counts

    # --- past answers learnt from the room -----------------------------------------------------
    @staticmethod
    def _stored(row: PastAnswerRow) -> StoredPair:
        return StoredPair(row.key, row.established_by, row.question_event_id, row.answer_event_id)

    def pair_for_question(self, question_event_id: str) -> StoredPair | None:
        with self.db.session() as s:
            row = s.scalars(
                select(PastAnswerRow).where(PastAnswerRow.question_event_id == question_event_id)
            ).first()
            return self._stored(row) if row else None

    def pairs_touching(self, event_id: str) -> list[StoredPair]:
        with self.db.session() as s:
            rows = s.scalars(
                select(PastAnswerRow).where(
                    or_(
                        PastAnswerRow.question_event_id == event_id,
                        PastAnswerRow.answer_event_id == event_id,
                    )
                )
            ).all()
            return [self._stored(r) for r in rows]

    def bot_replied(self, question_event_id: str) -> bool:
        reply = self.reply(question_event_id)
        return reply is not None and reply.state == "sent"

    def apply_changes(self, changes: Sequence[Change]) -> int:
        """Write what ``bot.mining.learn`` decided; returns how many pairs changed."""
        changed = 0
        with self.db.session() as s:
            for change in changes:
                if isinstance(change, Upsert):
                    upsert_in(
                        s,
                        change.pair,
                        room_id=change.room_id,
                        question_event_id=change.question_event_id,
                        answer_event_id=change.answer_event_id,
                    )
                    changed += 1
                elif isinstance(change, UpdateText):
                    for column in ("question", "answer"):
                        id_column = getattr(PastAnswerRow, f"{column}_event_id")
                        result = s.execute(
                            update(PastAnswerRow)
                            .where(id_column == change.event_id)
                            .values({column: change.body, "updated_at": utcnow()})
                        )
                        changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
                elif isinstance(change, Remove):
                    result = s.execute(
                        delete(PastAnswerRow).where(
                            or_(
                                PastAnswerRow.question_event_id == change.event_id,
                                PastAnswerRow.answer_event_id == change.event_id,
                            )
                        )
                    )
                    changed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return changed
