"""What the room store's parts share: the database, and the race-safe insert they all use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.chat.events import RoomEvent
from bot.store.database import Database
from bot.store.models import RoomEventRow


def event_from_row(r: RoomEventRow) -> RoomEvent:
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


class RoomStoreBase:
    """The database and its dialect; ``RoomStore`` combines the parts built on this."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._dialect = db.engine.dialect.name

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
