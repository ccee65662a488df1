"""The room side's persistence: events written once, the sync token, questions, replies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.chat.events import RoomEvent
from bot.corpus.pair_changes import Change, Remove, StoredPair, UpdateText, Upsert
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
# Statuses a re-handled question may still move between; the others were set by a person.
_OPEN_STATUSES = ("new", "suggested")
_IN_BATCH = 500


def _clip(value: str | None, column: Any) -> str | None:
    """``value`` cut to the column's length. These fields are whatever other people's clients
    sent; PostgreSQL refuses an overlong value (SQLite keeps it), and one odd event must not
    stop the batch, and with it the sync, on either backend."""
    length: int = column.type.length
    return value[:length] if value is not None else None


def _to_row(e: RoomEvent) -> dict[str, Any]:
    """The column values of a ``room_events`` row for this event (not yet handled or claimed)."""
    return {
        "event_id": e.event_id,
        "room_id": e.room_id,
        "sender": e.sender,
        "origin_ts": e.origin_ts,
        "event_type": _clip(e.event_type, RoomEventRow.event_type),
        "msgtype": _clip(e.msgtype, RoomEventRow.msgtype),
        "body": e.body,
        "formatted_body": e.formatted_body,
        "rel_type": _clip(e.rel_type, RoomEventRow.rel_type),
        "relates_to": _clip(e.relates_to, RoomEventRow.relates_to),
        "in_reply_to": _clip(e.in_reply_to, RoomEventRow.in_reply_to),
        "mentions": list(e.mentions),
        "origin": e.origin,
        "received_at": utcnow(),
    }


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


# Replies that count against the rate limits: sent, or claimed and (maybe) on their way.
_LIVE_REPLY_STATES = ("pending", "sent")
# The claim holder of a mention that waits for a rate limit to pass: its ``claimed_until`` is
# when it is due. No worker has this name, so the event is nobody's until then, and after it
# the sweepers (and the timer of the worker that deferred it) take it like any other.
DEFERRED = "supportbot:deferred"


def _claimable(worker: str, now: datetime) -> Any:
    """SQL condition: nobody holds the event's claim, this worker does, or the lease ran out."""
    return or_(
        RoomEventRow.claimed_by.is_(None),
        RoomEventRow.claimed_by == worker,
        RoomEventRow.claimed_until.is_(None),
        RoomEventRow.claimed_until < now,
    )


class RoomStore:
    """Safe to share between worker processes: every write that two workers may race on is a
    single conditional statement (insert-unless-present, upsert, compare-and-set update)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._dialect = db.engine.dialect.name

    # --- race-safe primitives ------------------------------------------------------------------
    def _insert_new(self, s: Session, model: Any, rows: list[dict[str, Any]], key: str) -> set[Any]:
        """Insert the rows whose key is not stored yet; return the keys this call inserted.

        Two workers may insert the same rows at once. ON CONFLICT DO NOTHING makes the second
        skip a row instead of failing its whole transaction, and RETURNING tells each which
        rows were its own. PostgreSQL makes the second wait for the first's uncommitted row and
        then skips it, so every key is reported to exactly one caller.
        """
        if not rows:
            return set()
        column = getattr(model, key)
        if self._dialect == "postgresql":
            pg = postgresql.insert(model).values(rows).on_conflict_do_nothing()
            return set(s.scalars(pg.returning(column)))
        if self._dialect == "sqlite":
            lite = sqlite.insert(model).values(rows).on_conflict_do_nothing()
            return set(s.scalars(lite.returning(column)))
        # Any other backend: a savepoint per row, so a duplicate undoes only that row.
        inserted: set[Any] = set()
        for row in rows:
            try:
                with s.begin_nested():
                    s.execute(insert(model).values(row))
            except IntegrityError:
                continue
            inserted.add(row[key])
        return inserted

    def _put_state(self, s: Session, key: str, value: str) -> None:
        """Insert or overwrite one key; two workers writing the first value never collide."""
        values = {"key": key, "value": value, "updated_at": utcnow()}
        changed = {"value": value, "updated_at": values["updated_at"]}
        if self._dialect == "postgresql":
            pg = postgresql.insert(SyncStateRow).values(values)
            s.execute(pg.on_conflict_do_update(index_elements=["key"], set_=changed))
        elif self._dialect == "sqlite":
            lite = sqlite.insert(SyncStateRow).values(values)
            s.execute(lite.on_conflict_do_update(index_elements=["key"], set_=changed))
        else:
            s.merge(SyncStateRow(**values))

    # --- sync state ----------------------------------------------------------------------------
    def get_state(self, key: str) -> str | None:
        with self.db.session() as s:
            row = s.get(SyncStateRow, key)
            return row.value if row else None

    def set_state(self, key: str, value: str) -> None:
        with self.db.session() as s:
            self._put_state(s, key, value)

    def sync_token(self) -> str | None:
        return self.get_state(SYNC_TOKEN_KEY)

    def persist_batch(self, events: Sequence[RoomEvent], next_token: str | None) -> list[RoomEvent]:
        """Write unseen events and the new sync token in one transaction; return the unseen.

        Idempotent on event id: a replayed batch (crash after the server sent it, before the
        token was stored) inserts nothing and yields nothing to act on twice. Several workers
        each sync the same rooms and persist the same events: an event is returned to the one
        worker whose insert stored it, never to two.

        The token key is shared by all workers, so an older worker's token may overwrite a
        newer one. Nothing is lost by that: a worker stores a token only together with every
        event before it, so any stored token resumes after events that are all persisted, and
        the replay from an older one inserts nothing.
        """
        first: dict[str, RoomEvent] = {}
        for event in events:
            first.setdefault(event.event_id, event)  # a duplicate inside one batch: the first
        # In event-id order: two workers inserting overlapping batches wait on each other's
        # rows in one global order (and take the token row last), so they cannot deadlock.
        rows = [_to_row(first[event_id]) for event_id in sorted(first)]
        inserted: set[str] = set()
        with self.db.session() as s:
            for start in range(0, len(rows), _IN_BATCH):
                inserted |= self._insert_new(
                    s, RoomEventRow, rows[start : start + _IN_BATCH], "event_id"
                )
            if next_token is not None:
                self._put_state(s, SYNC_TOKEN_KEY, next_token)
        return [e for e in first.values() if e.event_id in inserted]  # batch order

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

    def mark_handled(self, event_id: str, outcome: str, worker: str | None = None) -> None:
        """Done with it: the lease ends, and ``claimed_by`` keeps the worker that handled it."""
        values: dict[str, Any] = {"handled_at": utcnow(), "outcome": outcome[:64]}
        values["claimed_until"] = None
        if worker is not None:
            values["claimed_by"] = worker
        with self.db.session() as s:
            s.execute(update(RoomEventRow).where(RoomEventRow.event_id == event_id).values(values))

    # --- claims: which worker handles an event -------------------------------------------------
    def claim_event(
        self, event_id: str, worker: str, lease_seconds: float, *, now: datetime | None = None
    ) -> bool:
        """Take or renew this worker's claim on an unhandled event; False if another holds it.

        One conditional UPDATE, so it is atomic: SQLite runs one writer at a time, and
        PostgreSQL, after waiting for a concurrent claimer's row lock, re-checks the WHERE
        clause against the row that claimer committed. Two workers can never both get True
        for one event while its lease runs; after it ran out (the holder died or stalled),
        the first to ask takes it over.
        """
        now = now or utcnow()
        values = {"claimed_by": worker, "claimed_until": now + timedelta(seconds=lease_seconds)}
        return self._update_if_claimable(event_id, worker, now, values)

    def expired_holder(
        self, event_id: str, worker: str, *, now: datetime | None = None
    ) -> str | None:
        """The other worker whose lease on this unhandled event ran out, if any (for logs and
        the takeover metric; the claim itself is decided by ``claim_event`` alone)."""
        now = now or utcnow()
        with self.db.session() as s:
            row = s.execute(
                select(RoomEventRow.claimed_by, RoomEventRow.claimed_until).where(
                    RoomEventRow.event_id == event_id, RoomEventRow.handled_at.is_(None)
                )
            ).first()
        if row is None or row.claimed_by in (None, worker, DEFERRED) or row.claimed_until is None:
            return None
        return str(row.claimed_by) if row.claimed_until < now else None

    def release_claim(self, event_id: str, worker: str) -> None:
        """Give an unhandled event back (stopping mid-way) so others need not wait the lease."""
        with self.db.session() as s:
            s.execute(
                update(RoomEventRow)
                .where(
                    RoomEventRow.event_id == event_id,
                    RoomEventRow.handled_at.is_(None),
                    RoomEventRow.claimed_by == worker,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    def claimable(
        self,
        worker: str,
        *,
        received_before: datetime,
        limit: int,
        now: datetime | None = None,
    ) -> list[tuple[RoomEvent, str | None]]:
        """Unhandled events this worker could claim now, oldest first, with their claimant.

        Only events stored before ``received_before``: a just-persisted event is about to be
        handled by the worker that stored it. Nothing is claimed here; the caller claims each
        event right before handling it.
        """
        now = now or utcnow()
        with self.db.session() as s:
            rows = s.scalars(
                select(RoomEventRow)
                .where(
                    RoomEventRow.handled_at.is_(None),
                    RoomEventRow.received_at < received_before,
                    _claimable(worker, now),
                )
                .order_by(RoomEventRow.origin_ts, RoomEventRow.received_at)
                .limit(limit)
            ).all()
            # A deferral that came due is not a worker whose lease ran out.
            return [
                (_from_row(r), None if r.claimed_by == DEFERRED else r.claimed_by) for r in rows
            ]

    def claim_holders(self, *, now: datetime | None = None) -> set[str]:
        """Workers whose lease on some unhandled event is still running."""
        now = now or utcnow()
        with self.db.session() as s:
            return set(
                s.scalars(
                    select(RoomEventRow.claimed_by)
                    .where(
                        RoomEventRow.handled_at.is_(None),
                        RoomEventRow.claimed_by.is_not(None),
                        RoomEventRow.claimed_by != DEFERRED,
                        RoomEventRow.claimed_until >= now,
                    )
                    .distinct()
                )
            )

    def release_claims(self, workers: Iterable[str]) -> int:
        """Drop every claim these (dead) workers hold on unhandled events; returns how many."""
        names = list(workers)
        if not names:
            return 0
        with self.db.session() as s:
            result = s.execute(
                update(RoomEventRow)
                .where(RoomEventRow.handled_at.is_(None), RoomEventRow.claimed_by.in_(names))
                .values(claimed_by=None, claimed_until=None)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # --- mentions waiting for a rate limit, and the notices that say why one cannot wait -------
    def defer_event(
        self,
        event_id: str,
        worker: str,
        until: datetime,
        outcome: str,
        *,
        now: datetime | None = None,
    ) -> bool:
        """Hand this worker's claim to the deferral until ``until``; False if another holds it.

        The event stays unhandled: a restart loses nothing, and once ``until`` has passed any
        worker may claim it (one conditional UPDATE, as ``claim_event``), so it is handled once.
        ``outcome`` (``deferred:<reason>:<n>``) stays on the row until it is handled.
        """
        now = now or utcnow()
        values = {"claimed_by": DEFERRED, "claimed_until": until, "outcome": outcome[:64]}
        return self._update_if_claimable(event_id, worker, now, values)

    def _update_if_claimable(
        self, event_id: str, worker: str, now: datetime, values: dict[str, Any]
    ) -> bool:
        """Set ``values`` on an unhandled event ``worker`` may claim now, in one conditional
        UPDATE (see ``claim_event``); True when the row was updated."""
        with self.db.session() as s:
            result = s.execute(
                update(RoomEventRow)
                .where(
                    RoomEventRow.event_id == event_id,
                    RoomEventRow.handled_at.is_(None),
                    _claimable(worker, now),
                )
                .values(**values)
            )
            return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    def hold_outcome(self, event_id: str, worker: str, outcome: str) -> bool:
        """Record a decision (``notice:<reason>``) on an unhandled event before acting on it, so
        a restart repeats that decision instead of taking another; False if another holds it."""
        return self._update_if_claimable(event_id, worker, utcnow(), {"outcome": outcome[:64]})

    def held_outcome(self, event_id: str) -> str | None:
        """The decision stored on a not yet handled event (``deferred:...``, ``notice:...``)."""
        with self.db.session() as s:
            return s.scalar(
                select(RoomEventRow.outcome).where(
                    RoomEventRow.event_id == event_id, RoomEventRow.handled_at.is_(None)
                )
            )

    def waiting_mentions(self, room_id: str, user: str) -> tuple[int, int]:
        """Deferred mentions not yet picked up again: (this user's, this room's)."""
        waiting = (RoomEventRow.handled_at.is_(None), RoomEventRow.claimed_by == DEFERRED)
        with self.db.session() as s:
            by_user = s.scalar(
                select(func.count())
                .select_from(RoomEventRow)
                .where(*waiting, RoomEventRow.sender == user)
            )
            in_room = s.scalar(
                select(func.count())
                .select_from(RoomEventRow)
                .where(*waiting, RoomEventRow.room_id == room_id)
            )
        return int(by_user or 0), int(in_room or 0)

    def notices_since(
        self, since: datetime, *, room_id: str | None = None, user: str | None = None
    ) -> int:
        """ "Can't answer this now" notices sent after ``since`` or still on their way."""
        query = (
            select(func.count())
            .select_from(RoomEventRow)
            .where(
                RoomEventRow.outcome.like("notice:%"),
                or_(RoomEventRow.handled_at.is_(None), RoomEventRow.handled_at > since),
            )
        )
        if room_id is not None:
            query = query.where(RoomEventRow.room_id == room_id)
        if user is not None:
            query = query.where(RoomEventRow.sender == user)
        with self.db.session() as s:
            return int(s.scalar(query) or 0)

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

    # --- past answers learnt from the room -----------------------------------------------------
    @staticmethod
    def _stored(row: PastAnswerRow) -> StoredPair:
        return StoredPair(
            row.key, row.established_by, row.question_event_id, row.answer_event_id, row.review
        )

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
        """Write what ``bot.room.learning.learn`` decided; returns how many pairs changed."""
        changed = 0
        with self.db.session() as s:
            for change in changes:
                if isinstance(change, Upsert):
                    if change.review != "approved":
                        # Decided on a lookup outside this transaction: check again, so a
                        # proposal never takes the place of an approved pair.
                        existing = s.get(PastAnswerRow, change.pair.key)
                        if existing is not None and existing.review == "approved":
                            continue
                    upsert_in(
                        s,
                        change.pair,
                        room_id=change.room_id,
                        question_event_id=change.question_event_id,
                        answer_event_id=change.answer_event_id,
                        review=change.review,
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
