"""Questions (the triage queue) and the bot's replies to them, at most one per question."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.chat.events import RoomEvent
from bot.store.models import QuestionRow, ReplyRow, RoomEventRow, utcnow
from bot.store.room_store_base import RoomStoreBase

# Statuses a re-handled question may still move between; the others were set by a person.
_OPEN_STATUSES = ("new", "suggested")


@dataclass(frozen=True)
class ReplyClaim:
    """What the answerer should do about a reply: send it, or it was already sent."""

    state: str  # "new" (just claimed), "pending" (claimed earlier, not confirmed), "sent"
    txn_id: str
    body: str
    formatted_body: str
    thread_root: str
    room_id: str


# Replies that count against the rate limits: sent, or claimed and (maybe) on their way.
_LIVE_REPLY_STATES = ("pending", "sent")


class ReplyRecords(RoomStoreBase):
    """Race-safe between workers: upserts and insert-unless-present on the primary key."""

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
        """Insert or refresh a question's suggestion; race-safe between workers.

        A re-handled event (after a restart, or a lease taken over) refreshes the suggestion
        but never reopens a question a person already answered or dismissed meanwhile.
        """
        values: dict[str, Any] = {
            "event_id": event.event_id,
            "room_id": event.room_id,
            "asker": event.sender,
            "text": text,
            "mentioned": mentioned,
            "status": status,
            "confidence": confidence,
            "suggestion": suggestion,
            "sources": sources,
            "index_version": index_version,
            "updated_at": utcnow(),
        }
        with self.db.session() as s:
            if self._dialect not in ("postgresql", "sqlite"):
                existing = s.get(QuestionRow, event.event_id)
                if existing is not None and existing.status not in _OPEN_STATUSES:
                    values["status"] = existing.status
                s.merge(QuestionRow(**values))
                return
            dialect = postgresql if self._dialect == "postgresql" else sqlite
            stmt = dialect.insert(QuestionRow).values(values)
            refreshed = {k: stmt.excluded[k] for k in values if k not in ("event_id", "status")}
            refreshed["status"] = case(
                (QuestionRow.status.in_(_OPEN_STATUSES), stmt.excluded.status),
                else_=QuestionRow.status,
            )
            s.execute(stmt.on_conflict_do_update(index_elements=["event_id"], set_=refreshed))

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
        """Record the intent to reply before sending; the primary key makes it unique.

        Race-safe across workers: of two concurrent claims one inserts ("new"), the other
        finds that row ("pending") and sends the same body with the same transaction id,
        which the homeserver de-duplicates, so the room still sees one reply.
        """
        values = {
            "question_event_id": question_event_id,
            "room_id": room_id,
            "txn_id": txn_id,
            "state": "pending",
            "body": body,
            "formatted_body": formatted_body,
            "thread_root": thread_root,
            "posted_by": posted_by,
            "created_at": utcnow(),
        }
        with self.db.session() as s:
            inserted = self._insert_new(s, ReplyRow, [values], "question_event_id")
            row = s.get(ReplyRow, question_event_id)
            if row is None:  # only a transaction id taken by another question gets here
                raise RuntimeError(f"reply transaction id {txn_id} is taken by another question")
            state = "new" if inserted else row.state
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

    # --- what the rate limits count: the replies of every worker --------------------------------
    def replies_since(self, room_id: str, since: datetime) -> int:
        """Replies claimed in this room after ``since`` that were sent or may still be."""
        with self.db.session() as s:
            count = s.scalar(
                select(func.count())
                .select_from(ReplyRow)
                .where(
                    ReplyRow.room_id == room_id,
                    ReplyRow.state.in_(_LIVE_REPLY_STATES),
                    ReplyRow.created_at > since,
                )
            )
            return int(count or 0)

    def reply_times_since(self, room_id: str, since: datetime) -> list[datetime]:
        """When the replies counted by ``replies_since`` were claimed, oldest first."""
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(ReplyRow.created_at)
                    .where(
                        ReplyRow.room_id == room_id,
                        ReplyRow.state.in_(_LIVE_REPLY_STATES),
                        ReplyRow.created_at > since,
                    )
                    .order_by(ReplyRow.created_at)
                )
            )

    def last_reply_to(self, user: str) -> datetime | None:
        """When a reply to a question by this user was last claimed, in any room."""
        with self.db.session() as s:
            return s.scalar(
                select(func.max(ReplyRow.created_at))
                .join(RoomEventRow, RoomEventRow.event_id == ReplyRow.question_event_id)
                .where(RoomEventRow.sender == user, ReplyRow.state.in_(_LIVE_REPLY_STATES))
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

    def bot_followed_up(self, question: str, asker: str, *, besides: str | None = None) -> bool:
        """Whether the bot already answered one of ``asker``'s follow-ups to ``question``: a
        reply of its own (claimed or sent) to the asker's message in the question's thread or
        to the asker's edit of it. Replies to other people's questions asked in that thread do
        not count, so they never use up the asker's one follow-up. ``besides``: a follow-up
        whose own claim does not count, so one a crash left pending is finished."""
        with self.db.session() as s:
            found = s.scalar(
                select(ReplyRow.question_event_id)
                .join(RoomEventRow, RoomEventRow.event_id == ReplyRow.question_event_id)
                .where(
                    ReplyRow.question_event_id.not_in([question, besides or question]),
                    ReplyRow.posted_by == "bot",
                    RoomEventRow.sender == asker,
                    or_(
                        ReplyRow.thread_root == question,
                        (RoomEventRow.rel_type == "m.replace")
                        & (RoomEventRow.relates_to == question),
                    ),
                )
                .limit(1)
            )
        return found is not None

    def bot_replied(self, question_event_id: str) -> bool:
        reply = self.reply(question_event_id)
        return reply is not None and reply.state == "sent"
