"""bot.store.newcomers: a question is its asker's first when the room holds no earlier message
of theirs, on SQLite and PostgreSQL; the dashboard store marks and filters the queue with it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from bot.chat.events import RoomEvent
from bot.store.dashboard_store import DashboardStore, QueueFilters
from bot.store.database import Database
from bot.store.newcomers import first_questions
from bot.store.room_store import RoomStore

ROOM = "!keras:example.org"
OTHER_ROOM = "!tf:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
BOT = "@supportbot:example.org"
T0 = 1_700_000_000_000


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.create_schema()
    yield database
    database.close()


@pytest.fixture
def store(db: Database) -> RoomStore:
    return RoomStore(db)


def message(
    event_id: str,
    ts: int,
    *,
    sender: str = ALICE,
    room: str = ROOM,
    body: str = "hello",
    event_type: str = "m.room.message",
    origin: str = "live",
    rel_type: str | None = None,
    relates_to: str | None = None,
) -> RoomEvent:
    return RoomEvent(
        room_id=room,
        event_id=event_id,
        sender=sender,
        origin_ts=ts,
        event_type=event_type,
        msgtype="m.text" if event_type == "m.room.message" else None,
        body=body,
        rel_type=rel_type,
        relates_to=relates_to,
        origin=origin,
    )


def ask(store: RoomStore, event_id: str, ts: int, **kw: Any) -> RoomEvent:
    """Store the message and queue it as a question, as the service does."""
    event = message(event_id, ts, body="how do I stop training early?", **kw)
    store.persist_batch([event], None)
    store.save_question(
        event,
        event.body,
        mentioned=True,
        confidence=0.4,
        suggestion=None,
        sources=[],
        index_version="v-test",
        status="new",
    )
    return event


def test_the_first_question_is_marked_and_the_second_is_not(db: Database, store: RoomStore) -> None:
    ask(store, "$q1", T0)
    ask(store, "$q2", T0 + 60_000)
    assert first_questions(db, ["$q1", "$q2"]) == {"$q1"}


def test_any_earlier_message_counts_a_greeting_a_thread_reply_or_history(
    db: Database, store: RoomStore
) -> None:
    store.persist_batch(
        [
            message("$hi", T0, sender=ALICE),  # a plain "hello" before asking
            message("$old", T0, sender=BOB, origin="history"),  # read on first join
            message("$t", T0, sender="@carol:example.org", rel_type="m.thread", relates_to="$x"),
        ],
        None,
    )
    ask(store, "$a", T0 + 1_000, sender=ALICE)
    ask(store, "$b", T0 + 1_000, sender=BOB)
    ask(store, "$c", T0 + 1_000, sender="@carol:example.org")
    ask(store, "$d", T0 + 1_000, sender="@dave:example.org")
    assert first_questions(db, ["$a", "$b", "$c", "$d"]) == {"$d"}


def test_only_messages_count_and_only_earlier_ones_in_the_same_room(
    db: Database, store: RoomStore
) -> None:
    store.persist_batch(
        [
            # In another room: Alice is new here all the same.
            message("$elsewhere", T0, sender=ALICE, room=OTHER_ROOM),
            # A reaction is not a message.
            message("$react", T0, sender=ALICE, event_type="m.reaction"),
            # Bob's message comes after his question: it does not make the question a repeat.
            message("$later", T0 + 5_000, sender=BOB),
        ],
        None,
    )
    ask(store, "$a", T0 + 1_000, sender=ALICE)
    ask(store, "$b", T0 + 1_000, sender=BOB)
    assert first_questions(db, ["$a", "$b"]) == {"$a", "$b"}
    # In the other room, Alice's question there is not her first.
    ask(store, "$a2", T0 + 2_000, sender=ALICE, room=OTHER_ROOM)
    assert first_questions(db, ["$a2"]) == set()


def test_two_messages_in_the_same_millisecond_make_one_first(
    db: Database, store: RoomStore
) -> None:
    ask(store, "$x1", T0)
    ask(store, "$x2", T0)
    assert first_questions(db, ["$x1", "$x2"]) == {"$x1"}


def test_regulars_are_never_newcomers_and_unknown_ids_are_left_out(
    db: Database, store: RoomStore
) -> None:
    ask(store, "$m", T0, sender=BOB)
    ask(store, "$a", T0, sender=ALICE)
    assert first_questions(db, ["$m", "$a", "$nope"], regulars={BOB, BOT}) == {"$a"}
    assert first_questions(db, []) == set()


def test_the_queue_marks_and_filters_first_questions_in_one_query(
    db: Database, store: RoomStore
) -> None:
    store.persist_batch([message("$hi", T0, sender=BOB)], None)
    ask(store, "$a1", T0 + 1_000, sender=ALICE)
    ask(store, "$b1", T0 + 2_000, sender=BOB)
    ask(store, "$a2", T0 + 3_000, sender=ALICE)
    ask(store, "$m1", T0 + 4_000, sender="@maria:example.org")
    dashboard = DashboardStore(db, regulars={"@maria:example.org"})

    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = dashboard.queue(QueueFilters(), page_size=10)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    marked = {i.event_id: i.first_question for i in page.items}
    assert marked == {"$a1": True, "$b1": False, "$a2": False, "$m1": False}
    # The count and the page: whether a row is a first question costs no query of its own.
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2

    new = dashboard.queue(QueueFilters(asker="new"))
    assert ([i.event_id for i in new.items], new.total) == (["$a1"], 1)
    returning = dashboard.queue(QueueFilters(asker="returning"))
    assert [i.event_id for i in returning.items] == ["$m1", "$a2", "$b1"]
    assert returning.total == 3
    # The filter combines with the others.
    assert dashboard.queue(QueueFilters(asker="new", room=OTHER_ROOM)).total == 0

    detail = dashboard.question("$a1")
    assert detail is not None and detail.item.first_question
    later = dashboard.question("$a2")
    assert later is not None and not later.item.first_question
