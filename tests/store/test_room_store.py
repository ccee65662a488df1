"""bot.store.room_store: events written once with the sync token, the handled queue, replies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

import bot.store.room_store as room_store_module
from bot.chat.events import RoomEvent
from bot.corpus.pair_changes import Upsert
from bot.corpus.past_answers import PastAnswer
from bot.store.database import Database
from bot.store.models import PastAnswerRow, RoomEventRow
from bot.store.past_answers import PastAnswerStore
from bot.store.reply_records import ReplyClaim
from bot.store.room_store import SYNC_TOKEN_KEY, RoomStore

ROOM = "!room:example.org"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.create_schema()
    yield database
    database.close()


@pytest.fixture
def store(db: Database) -> RoomStore:
    return RoomStore(db)


def ev(event_id: str, ts: int = 1, body: str = "how do I save a model?", **kw: object) -> RoomEvent:
    fields: dict[str, object] = {
        "room_id": ROOM,
        "event_id": event_id,
        "sender": "@alice:example.org",
        "origin_ts": ts,
        "event_type": "m.room.message",
        "msgtype": "m.text",
        "body": body,
    }
    fields.update(kw)
    return RoomEvent(**fields)  # type: ignore[arg-type]


# --- events and the sync token -------------------------------------------------------------------
def test_empty_store(store: RoomStore) -> None:
    assert store.sync_token() is None
    assert store.unhandled() == []
    assert store.event("$nope") is None
    assert not store.known("$nope")
    assert store.reply("$nope") is None
    assert store.question("$nope") is None
    assert store.pending_replies() == []
    assert store.reply_event_ids() == set()


def test_persist_batch_returns_fresh_events_and_stores_token(store: RoomStore) -> None:
    batch = [ev("$a", 1), ev("$b", 2)]
    assert store.persist_batch(batch, "s1") == batch
    assert store.sync_token() == "s1"
    assert store.get_state(SYNC_TOKEN_KEY) == "s1"
    assert store.known("$a") and store.known("$b")


def test_replayed_batch_inserts_nothing(store: RoomStore) -> None:
    batch = [ev("$a", 1), ev("$b", 2)]
    store.persist_batch(batch, "s1")
    store.mark_handled("$a", "replied")
    assert store.persist_batch(batch, "s2") == []
    assert store.sync_token() == "s2"  # the token still moves on
    # Nothing was re-inserted: $a stays handled, $b is still the only unhandled event.
    assert [e.event_id for e in store.unhandled()] == ["$b"]


def test_partly_known_batch_returns_only_new(store: RoomStore) -> None:
    store.persist_batch([ev("$a", 1)], "s1")
    fresh = store.persist_batch([ev("$a", 1), ev("$c", 3), ev("$b", 2)], "s2")
    assert [e.event_id for e in fresh] == ["$c", "$b"]  # batch order is kept


def test_duplicates_inside_one_batch(store: RoomStore) -> None:
    fresh = store.persist_batch([ev("$a", 1), ev("$a", 1, body="changed"), ev("$b", 2)], "s1")
    assert [e.event_id for e in fresh] == ["$a", "$b"]
    stored = store.event("$a")
    assert stored is not None and stored.body == "how do I save a model?"


def test_none_token_keeps_the_old_one(store: RoomStore) -> None:
    store.persist_batch([], "s1")
    assert store.persist_batch([ev("$a")], None) == [ev("$a")]
    assert store.sync_token() == "s1"


def test_empty_batch_moves_the_token(store: RoomStore) -> None:
    assert store.persist_batch([], "s1") == []
    assert store.persist_batch([], "s2") == []
    assert store.sync_token() == "s2"


def test_large_batch_crosses_the_in_clause_limit(store: RoomStore) -> None:
    first = [ev(f"$e{i:05d}", i) for i in range(1200)]
    assert len(store.persist_batch(first, "s1")) == 1200
    again = [*first, ev("$new", 5000)]
    assert [e.event_id for e in store.persist_batch(again, "s2")] == ["$new"]


def test_events_and_token_are_one_transaction(
    store: RoomStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.persist_batch([ev("$old")], "s1")
    real_to_row = room_store_module._to_row

    def failing_to_row(event: RoomEvent) -> object:
        if event.event_id == "$boom":
            raise RuntimeError("disk on fire")
        return real_to_row(event)

    monkeypatch.setattr(room_store_module, "_to_row", failing_to_row)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.persist_batch([ev("$a", 2), ev("$boom", 3)], "s2")
    # Neither the first event nor the token were written.
    assert not store.known("$a")
    assert store.sync_token() == "s1"
    monkeypatch.undo()
    assert [e.event_id for e in store.persist_batch([ev("$a", 2), ev("$boom", 3)], "s2")] == [
        "$a",
        "$boom",
    ]


def test_round_trip_keeps_every_field(store: RoomStore) -> None:
    event = ev(
        "$full",
        42,
        body="keras-bot: how?",
        formatted_body="<b>how?</b>",
        rel_type="m.thread",
        relates_to="$root",
        in_reply_to="$prev",
        mentions=("@keras-bot:example.org", "@bob:example.org"),
        origin="gap",
        msgtype=None,
    )
    store.persist_batch([event], "s1")
    assert store.event("$full") == event
    assert store.unhandled() == [event]


def test_overlong_client_fields_are_clipped_not_refused(store: RoomStore) -> None:
    """msgtype, rel_type and relation targets are whatever a client sent; PostgreSQL would
    refuse the whole batch (and so stall the sync) for one overlong value."""
    msgtype, target = "m." + "x" * 100, "$" + "z" * 300
    event = ev("$odd", msgtype=msgtype, rel_type="r" * 80, relates_to=target)
    assert store.persist_batch([event], "s1") == [event]
    stored = store.event("$odd")
    assert stored is not None and stored.body == event.body
    assert (stored.msgtype, stored.rel_type) == (msgtype[:64], "r" * 64)
    assert stored.relates_to == target[:255]
    assert store.sync_token() == "s1"


# --- the handled queue ---------------------------------------------------------------------------
def test_unhandled_in_origin_ts_order(store: RoomStore) -> None:
    store.persist_batch([ev("$c", 30), ev("$a", 10)], "s1")
    store.persist_batch([ev("$b", 20), ev("$d", 40)], "s2")
    assert [e.event_id for e in store.unhandled()] == ["$a", "$b", "$c", "$d"]
    assert [e.event_id for e in store.unhandled(limit=2)] == ["$a", "$b"]


def test_equal_timestamps_keep_arrival_order(store: RoomStore) -> None:
    store.persist_batch([ev("$first", 5)], "s1")
    store.persist_batch([ev("$second", 5)], "s2")
    assert [e.event_id for e in store.unhandled()] == ["$first", "$second"]


def test_mark_handled(store: RoomStore, db: Database) -> None:
    store.persist_batch([ev("$a", 1), ev("$b", 2)], "s1")
    store.mark_handled("$a", "ignored:" + "x" * 200)
    assert [e.event_id for e in store.unhandled()] == ["$b"]
    store.mark_handled("$b", "replied")
    assert store.unhandled() == []
    store.mark_handled("$unknown", "replied")  # no row: nothing happens
    with db.session() as s:
        outcomes = dict(s.execute(select(RoomEventRow.event_id, RoomEventRow.outcome)).all())
    assert outcomes["$b"] == "replied"
    assert outcomes["$a"] is not None and len(outcomes["$a"]) == 64  # truncated to the column


def test_state_keys(store: RoomStore) -> None:
    store.set_state("room.!a.joined", "1")
    store.set_state("room.!a.joined", "2")
    assert store.get_state("room.!a.joined") == "2"
    assert store.get_state("missing") is None


# --- questions -----------------------------------------------------------------------------------
def test_save_question_and_status(store: RoomStore) -> None:
    event = ev("$q")
    store.persist_batch([event], "s1")
    sources = [{"doc_id": "d", "url": "https://keras.io/x", "score": 0.5}]
    store.save_question(
        event,
        "how do I save a model?",
        mentioned=True,
        confidence=0.8,
        suggestion="See **saving**",
        sources=sources,
        index_version="v1",
        status="suggested",
    )
    row = store.question("$q")
    assert row is not None
    assert (row.room_id, row.asker, row.text) == (ROOM, "@alice:example.org", event.body)
    assert row.mentioned is True and row.confidence == 0.8
    assert row.sources == sources and row.index_version == "v1" and row.status == "suggested"
    # Saving again (a re-handled event) refreshes the one row per question...
    store.save_question(
        event,
        "how do I save a model?",
        mentioned=False,
        confidence=None,
        suggestion=None,
        sources=[],
        index_version=None,
        status="new",
    )
    row = store.question("$q")
    assert row is not None and row.status == "new" and row.confidence is None
    assert row.suggestion is None and row.sources == [] and row.mentioned is False
    # ...but never reopens one a person answered or dismissed meanwhile.
    for settled in ("answered_person", "dismissed", "answered_bot"):
        store.set_question_status("$q", settled)
        store.save_question(
            event,
            "how do I save a model?",
            mentioned=True,
            confidence=0.7,
            suggestion="See **saving**",
            sources=sources,
            index_version="v2",
            status="suggested",
        )
        row = store.question("$q")
        assert row is not None and row.status == settled
        assert row.confidence == 0.7 and row.index_version == "v2"
    store.set_question_status("$missing", "dismissed")  # no row: nothing happens


# --- replies -------------------------------------------------------------------------------------
def claim(store: RoomStore, qid: str = "$q", txn: str = "txn-1", body: str = "B") -> ReplyClaim:
    return store.claim_reply(
        question_event_id=qid,
        room_id=ROOM,
        txn_id=txn,
        body=body,
        formatted_body=f"<p>{body}</p>",
        thread_root="$root",
    )


def test_claim_reply_state_machine(store: RoomStore) -> None:
    first = store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="txn-1",
        body="B",
        formatted_body="<p>B</p>",
        thread_root="$root",
    )
    assert first.state == "new"
    assert (first.txn_id, first.body, first.formatted_body) == ("txn-1", "B", "<p>B</p>")
    assert (first.thread_root, first.room_id) == ("$root", ROOM)
    assert [r.question_event_id for r in store.pending_replies()] == ["$q"]
    # Claimed again (a restart before the send was confirmed): same txn id, the first body.
    second = store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="txn-other",
        body="other body",
        formatted_body="<p>other</p>",
        thread_root="$elsewhere",
    )
    assert second.state == "pending"
    assert second.txn_id == "txn-1"
    assert (second.body, second.formatted_body, second.thread_root) == ("B", "<p>B</p>", "$root")
    assert store.reply_event_ids() == set()
    store.mark_reply_sent("$q", "$reply")
    third = store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="txn-1",
        body="B",
        formatted_body="<p>B</p>",
        thread_root="$root",
    )
    assert third.state == "sent" and third.txn_id == "txn-1"
    assert store.pending_replies() == []
    assert store.reply_event_ids() == {"$reply"}
    row = store.reply("$q")
    assert row is not None
    assert row.state == "sent" and row.reply_event_id == "$reply" and row.sent_at is not None
    assert row.posted_by == "bot"


def test_a_follow_up_is_the_askers_message_in_the_thread_or_edit(store: RoomStore) -> None:
    """``bot_followed_up(question, asker)``: a bot reply to the asker's message in the
    question's thread, or to the asker's edit of it; not to the question itself, not to
    someone else's question in that thread (on SQLite and PostgreSQL alike)."""
    alice, bob = "@alice:example.org", "@bob:example.org"
    thread = {"rel_type": "m.thread", "relates_to": "$root"}
    store.persist_batch(
        [
            ev("$root", 1),
            ev("$bob", 2, sender=bob, **thread),
            ev("$bob-edit", 3, sender=bob, rel_type="m.replace", relates_to="$bob"),
            ev("$alice", 4, **thread),
        ],
        None,
    )
    # Every reply in the thread of "$root" (``claim``'s thread root).
    claim(store, "$root", "txn-root")
    claim(store, "$bob", "txn-bob")
    assert not store.bot_followed_up("$root", alice)  # the question itself, Bob's question
    claim(store, "$bob-edit", "txn-bob-edit")
    assert store.bot_followed_up("$bob", bob)  # his edit of his in-thread question
    assert not store.bot_followed_up("$root", alice) and not store.bot_followed_up("$bob", alice)
    claim(store, "$alice", "txn-alice")
    assert store.bot_followed_up("$root", alice)
    assert not store.bot_followed_up("$root", alice, besides="$alice")  # its own claim


def test_reply_event_ids_only_sent(store: RoomStore) -> None:
    for i in range(3):
        claim(store, f"$q{i}", f"txn-{i}")
    store.mark_reply_sent("$q0", "$r0")
    store.mark_reply_sent("$q2", "$r2")
    assert store.reply_event_ids() == {"$r0", "$r2"}
    assert [r.question_event_id for r in store.pending_replies()] == ["$q1"]


def test_claims_survive_a_new_store_on_the_same_file(database_url: str) -> None:
    url = database_url
    first = Database(url)
    first.create_schema()
    claim(RoomStore(first))
    first.close()
    second = Database(url)
    second.create_schema()
    try:
        again = RoomStore(second).claim_reply(
            question_event_id="$q",
            room_id=ROOM,
            txn_id="txn-2",
            body="X",
            formatted_body="<p>X</p>",
            thread_root="$root",
        )
        assert (again.state, again.txn_id) == ("pending", "txn-1")
    finally:
        second.close()


def test_feedback_counts_reactions_on_the_bot_reply(store: RoomStore) -> None:
    store.persist_batch([ev("$q")], None)
    assert store.feedback("$q") == {}
    store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="t",
        body="b",
        formatted_body="<p>b</p>",
        thread_root="$q",
    )
    store.mark_reply_sent("$q", "$reply")
    reactions = [
        ev(
            f"$r{i}",
            event_type="m.reaction",
            msgtype=None,
            body=key,
            rel_type="m.annotation",
            relates_to=target,
        )
        for i, (key, target) in enumerate(
            [("👍", "$reply"), ("👍", "$reply"), ("👎", "$reply"), ("👍", "$elsewhere")]
        )
    ]
    store.persist_batch(reactions, None)
    assert store.feedback("$q") == {"👍": 2, "👎": 1}


# --- past answers waiting for a maintainer's review ----------------------------------------------
def _pair(answer_id: str, sender: str, how: str, review: str) -> Upsert:
    return Upsert(
        pair=PastAnswer(
            key="thread:$q",
            question="How do I freeze layers?",
            answer=f"answer {answer_id}",
            url="https://matrix.to/#/!room/$q",
            asked_by="@alice:example.org",
            answered_by=sender,
            established_by=how,
        ),
        room_id=ROOM,
        question_event_id="$q",
        answer_event_id=answer_id,
        review=review,
    )


def test_pending_pairs_are_not_searchable_until_approved(store: RoomStore, db: Database) -> None:
    past = PastAnswerStore(db)
    assert store.apply_changes([_pair("$a", "@bob:x", "accepted-reaction", "pending")]) == 1
    stored = store.pair_for_question("$q")
    assert stored is not None and stored.review == "pending"
    assert past.list_all() == []  # what index builds read
    [waiting] = past.pending()
    assert (waiting.key, waiting.answered_by, waiting.answer) == (
        "thread:$q",
        "@bob:x",
        "answer $a",
    )
    assert past.review("thread:$q", approve=True, user="maria")
    assert [p.key for p in past.list_all()] == ["thread:$q"] and past.pending() == []
    assert not past.review("thread:$q", approve=False, user="otto")  # decided already
    with db.session() as s:
        row = s.get(PastAnswerRow, "thread:$q")
        assert row is not None and (row.review, row.reviewed_by) == ("approved", "maria")
        assert row.reviewed_at is not None


def test_rejected_pairs_stay_out_and_maintainer_pairs_are_never_replaced(
    store: RoomStore, db: Database
) -> None:
    past = PastAnswerStore(db)
    store.apply_changes([_pair("$a", "@bob:x", "accepted-reaction", "pending")])
    assert past.review("thread:$q", approve=False, user="maria")
    assert past.list_all() == [] and past.pending() == []
    # A maintainer's answer replaces it; a later reaction cannot take that place.
    store.apply_changes([_pair("$m", "@maint:x", "maintainer-thread", "approved")])
    assert store.apply_changes([_pair("$b", "@bob:x", "accepted-reaction", "pending")]) == 0
    [kept] = past.list_all()
    assert (kept.answered_by, kept.answer) == ("@maint:x", "answer $m")
    assert past.pending() == []
