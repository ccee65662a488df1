"""The room side's persistence: events written once and the sync token, combined with the
claims (``room_claims``), questions and replies (``reply_records``) and learnt pairs
(``learnt_pairs``) into the one ``RoomStore`` the room and the dashboard use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.chat.events import RoomEvent
from bot.store.learnt_pairs import LearntPairs
from bot.store.models import RoomEventRow, SyncStateRow, utcnow
from bot.store.reply_records import ReplyRecords
from bot.store.room_claims import RoomClaims
from bot.store.room_store_base import event_from_row

SYNC_TOKEN_KEY = "matrix.sync_token"
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


class RoomStore(RoomClaims, ReplyRecords, LearntPairs):
    """Safe to share between worker processes: every write that two workers may race on is a
    single conditional statement (insert-unless-present, upsert, compare-and-set update).

    The claims, the questions and replies, and the learnt pairs are in their own modules;
    this one keeps the events and the sync state.
    """

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
            return [event_from_row(r) for r in rows]

    def mark_handled(self, event_id: str, outcome: str, worker: str | None = None) -> None:
        """Done with it: the lease ends, and ``claimed_by`` keeps the worker that handled it."""
        values: dict[str, Any] = {"handled_at": utcnow(), "outcome": outcome[:64]}
        values["claimed_until"] = None
        if worker is not None:
            values["claimed_by"] = worker
        with self.db.session() as s:
            s.execute(update(RoomEventRow).where(RoomEventRow.event_id == event_id).values(values))

    def event(self, event_id: str) -> RoomEvent | None:
        with self.db.session() as s:
            row = s.get(RoomEventRow, event_id)
            return event_from_row(row) if row else None
