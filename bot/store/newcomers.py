"""First-time askers (issue 13, item 2): whether a question's sender had posted in its room
before it.

A question is a *first question* when ``room_events`` holds no earlier message
(``m.room.message``, notices and thread replies included) from the same sender in the same
room. That table keeps every message the bot has seen, including the history it reads when it
first joins a room (``origin = "history"``), so "before" means "as far as the bot has seen";
someone whose only earlier messages predate that history counts as new. "Earlier" orders by
the message's own timestamp, then by event id, so of two messages sent in the same
millisecond exactly one is first.

The test is one correlated subquery written in SQL, so a whole page of the queue is marked
(or filtered) in the query that reads it. Each probe is one seek on the index
``ix_room_events_room_sender_ts`` (room, sender, time; migration 0004) that stops at the first
earlier message. The bot's own users and the maintainers are never newcomers: the caller
passes them as ``regulars``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import ColumnElement, and_, literal, or_, select
from sqlalchemy.orm import aliased

from bot.store.database import Database
from bot.store.models import QuestionRow, RoomEventRow

MESSAGE = "m.room.message"

# Events per IN (...) list: well under SQLite's and PostgreSQL's bind-parameter limits.
_BATCH = 500


def first_question(regulars: Collection[str] = ()) -> ColumnElement[bool]:
    """True for a ``RoomEventRow`` (the question's event, correlated from the enclosing query)
    whose sender has no earlier message in its room and is not one of ``regulars``."""
    earlier = aliased(RoomEventRow, name="earlier")
    # A scalar subquery, not EXISTS: PostgreSQL turns [NOT] EXISTS into a hash anti join that
    # compares each question with every message of its sender in the room (quadratic for
    # regulars); a LIMIT 1 subquery stays one index probe per row on both backends.
    one_earlier = (
        select(literal(1))
        .where(
            earlier.room_id == RoomEventRow.room_id,
            earlier.sender == RoomEventRow.sender,
            earlier.event_type == MESSAGE,
            # (origin_ts, event_id) before the question's; the first part a range on the index.
            earlier.origin_ts <= RoomEventRow.origin_ts,
            or_(
                earlier.origin_ts < RoomEventRow.origin_ts,
                earlier.event_id < RoomEventRow.event_id,
            ),
        )
        .correlate(RoomEventRow)
        .limit(1)
        .scalar_subquery()
    )
    no_earlier = one_earlier.is_(None)
    if not regulars:
        return no_earlier
    return and_(RoomEventRow.sender.not_in(sorted(set(regulars))), no_earlier)


def first_questions(
    db: Database, event_ids: Iterable[str], *, regulars: Collection[str] = ()
) -> set[str]:
    """Which of these questions (event ids in ``questions``) are their asker's first in the
    room: one query per 500 ids. Ids that are not questions are left out."""
    wanted = list(dict.fromkeys(event_ids))
    found: set[str] = set()
    condition = first_question(regulars)
    with db.session() as s:
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start : start + _BATCH]
            found.update(
                s.scalars(
                    select(QuestionRow.event_id)
                    .join(RoomEventRow, RoomEventRow.event_id == QuestionRow.event_id)
                    .where(QuestionRow.event_id.in_(batch), condition)
                )
            )
    return found
