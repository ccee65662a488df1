"""Several workers on one database: race-safe persisting, event claims with leases, reply
claims and the shared rate-limit history, on SQLite and on a real PostgreSQL.

The concurrency tests run two threads, each with its own ``Database`` (its own engine and
connections, as two worker processes would have), started together on a barrier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from bot.chat.events import RoomEvent
from bot.store.database import Database
from bot.store.reply_records import ReplyClaim
from bot.store.room_store import SYNC_TOKEN_KEY, RoomStore

T = TypeVar("T")
ROOM = "!room:example.org"
LEASE = 30.0


def ev(event_id: str, ts: int = 1, sender: str = "@alice:example.org") -> RoomEvent:
    return RoomEvent(
        room_id=ROOM,
        event_id=event_id,
        sender=sender,
        origin_ts=ts,
        event_type="m.room.message",
        msgtype="m.text",
        body="keras-bot: how do I save a model?",
    )


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[RoomStore, RoomStore]]:
    """Two stores on one database, each with its own engine: two workers."""
    first, second = Database(database_url), Database(database_url)
    first.create_schema()
    yield RoomStore(first), RoomStore(second)
    first.close()
    second.close()


@pytest.fixture
def store(stores: tuple[RoomStore, RoomStore]) -> RoomStore:
    return stores[0]


def together(*calls: Callable[[], T]) -> list[T]:
    """Run the calls in threads released at the same moment; re-raise the first error."""
    barrier = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int, call: Callable[[], T]) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads)
    return results  # type: ignore[return-value]


def claim_reply(store: RoomStore, qid: str, body: str = "B") -> ReplyClaim:
    return store.claim_reply(
        question_event_id=qid,
        room_id=ROOM,
        txn_id=f"txn-{qid}",
        body=body,
        formatted_body=f"<p>{body}</p>",
        thread_root=qid,
    )


# --- persisting the same batches from two workers ------------------------------------------------
def test_two_workers_persisting_overlapping_batches(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    for round_ in range(3):
        events = [ev(f"$r{round_}-{i:04d}", i) for i in range(1200)]
        # The same large batch at the same moment, in opposite orders. Inserted in the order
        # given, the rows deadlock on PostgreSQL (each worker waits for a row the other
        # inserted); the store inserts in one global order instead.
        fresh_a, fresh_b = together(
            lambda: [e.event_id for e in a.persist_batch(events, "sA")],  # noqa: B023
            lambda: [e.event_id for e in b.persist_batch(events[::-1], "sB")],  # noqa: B023
        )
        assert not set(fresh_a) & set(fresh_b)  # fresh for exactly one worker ...
        assert sorted(fresh_a + fresh_b) == [e.event_id for e in events]  # ... none lost
        assert fresh_a == sorted(fresh_a) and fresh_b == sorted(fresh_b, reverse=True)
    # Then differently cut, overlapping pieces.
    pieces = [ev(f"$p{i:03d}", i) for i in range(300)]
    mine, theirs = together(
        lambda: [
            e.event_id for k in range(0, 300, 40) for e in a.persist_batch(pieces[k : k + 40], None)
        ],
        lambda: [
            e.event_id
            for k in range(0, 300, 25)
            for e in b.persist_batch(pieces[::-1][k : k + 25], None)
        ],
    )
    assert sorted(mine + theirs) == [e.event_id for e in pieces] and not set(mine) & set(theirs)
    assert len(a.unhandled(limit=10_000)) == 3 * 1200 + 300
    assert a.sync_token() in ("sA", "sB")


def test_first_token_written_by_two_workers_at_once(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    together(lambda: a.persist_batch([ev("$x")], "sA"), lambda: b.persist_batch([ev("$x")], "sB"))
    assert a.sync_token() in ("sA", "sB")
    together(lambda: a.set_state("k", "1"), lambda: b.set_state("k", "2"))
    assert a.get_state("k") in ("1", "2")
    assert a.get_state(SYNC_TOKEN_KEY) == b.sync_token()


def test_an_older_token_overwriting_a_newer_one_loses_nothing(store: RoomStore) -> None:
    # Worker A is ahead (s2), worker B stores its older token (s1) last. A restart resumes from
    # s1 and is served s1's events again: all stored already, so nothing is fresh twice.
    store.persist_batch([ev("$1", 1)], "s1")
    store.persist_batch([ev("$2", 2)], "s2")
    store.persist_batch([ev("$1", 1)], "s1")
    assert store.sync_token() == "s1"
    assert store.persist_batch([ev("$2", 2), ev("$3", 3)], "s3") == [ev("$3", 3)]


def test_insert_fallback_for_other_databases(store: RoomStore) -> None:
    # Backends without INSERT ... ON CONFLICT: one savepoint per row; same answers.
    store._dialect = "other"
    assert store.persist_batch([ev("$a"), ev("$b")], "s1") == [ev("$a"), ev("$b")]
    assert store.persist_batch([ev("$b"), ev("$c")], "s2") == [ev("$c")]
    assert store.sync_token() == "s2"
    assert claim_reply(store, "$a").state == "new"
    assert claim_reply(store, "$a", body="other").state == "pending"


# --- event claims --------------------------------------------------------------------------------
def test_claim_event_lifecycle(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    a.persist_batch([ev("$q")], None)
    t0 = datetime.now(UTC)
    assert not a.claim_event("$missing", "w1", LEASE, now=t0)
    assert a.claim_event("$q", "w1", LEASE, now=t0)
    assert not b.claim_event("$q", "w2", LEASE, now=t0 + timedelta(seconds=LEASE - 1))
    # The holder renews: the lease runs from the renewal.
    assert a.claim_event("$q", "w1", LEASE, now=t0 + timedelta(seconds=LEASE - 1))
    assert not b.claim_event("$q", "w2", LEASE, now=t0 + timedelta(seconds=LEASE + 1))
    # Not renewed in time (the holder died): the next worker takes it over.
    later = t0 + timedelta(seconds=2 * LEASE)
    assert b.expired_holder("$q", "w2", now=t0 + timedelta(seconds=LEASE)) is None  # still held
    assert b.expired_holder("$q", "w2", now=later) == "w1"
    assert a.expired_holder("$q", "w1", now=later) is None  # its own claim is no takeover
    assert b.claim_event("$q", "w2", LEASE, now=later)
    assert not a.claim_event("$q", "w1", LEASE, now=later)
    assert a.claim_holders(now=later) == {"w2"}
    b.mark_handled("$q", "replied", "w2")
    # Handled: nobody can claim it again, and it records who handled it.
    assert not b.claim_event("$q", "w2", LEASE, now=later)
    assert not a.claim_event("$q", "w1", LEASE, now=later + timedelta(days=1))
    assert a.claim_holders(now=later) == set()
    assert a.claimable("w1", received_before=later + timedelta(days=1), limit=10) == []


def test_release_claim_hands_it_over_at_once(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    a.persist_batch([ev("$q")], None)
    assert a.claim_event("$q", "w1", LEASE)
    b.release_claim("$q", "w2")  # not its claim: nothing happens
    assert not b.claim_event("$q", "w2", LEASE)
    a.release_claim("$q", "w1")
    assert b.claim_event("$q", "w2", LEASE)


def test_release_claims_of_dead_workers(store: RoomStore) -> None:
    store.persist_batch([ev("$1", 1), ev("$2", 2), ev("$3", 3)], None)
    assert store.claim_event("$1", "dead", LEASE)
    assert store.claim_event("$2", "dead", LEASE)
    assert store.claim_event("$3", "alive", LEASE)
    assert store.release_claims([]) == 0
    assert store.release_claims(["dead"]) == 2
    assert store.claim_holders() == {"alive"}
    assert store.claim_event("$1", "other", LEASE)


def test_claimable_is_what_a_sweep_may_take(store: RoomStore) -> None:
    store.persist_batch([ev("$c", 3), ev("$a", 1), ev("$b", 2), ev("$d", 4), ev("$e", 5)], None)
    now = datetime.now(UTC)
    after = now + timedelta(seconds=1)
    assert store.claim_event("$a", "other", LEASE, now=now)  # held by a live worker
    assert store.claim_event("$b", "me", LEASE, now=now)  # held by this one
    assert store.claim_event("$c", "dead", 1.0, now=now - timedelta(seconds=5))  # ran out
    store.mark_handled("$d", "replied", "other")
    found = store.claimable("me", received_before=after, limit=10, now=now)
    assert [(e.event_id, holder) for e, holder in found] == [
        ("$b", "me"),
        ("$c", "dead"),
        ("$e", None),
    ]
    assert [e.event_id for e, _ in store.claimable("me", received_before=after, limit=1)] == ["$b"]
    # Just persisted (after the cut-off): left to the worker that stored it.
    assert store.claimable("me", received_before=now - timedelta(minutes=1), limit=10) == []


def test_two_workers_claiming_the_same_200_events(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    ids = [f"$e{i:03d}" for i in range(200)]
    a.persist_batch([ev(i, n) for n, i in enumerate(ids)], None)

    def claim_all(store: RoomStore, worker: str, now: datetime) -> set[str]:
        return {i for i in ids if store.claim_event(i, worker, LEASE, now=now)}

    t0 = datetime.now(UTC)
    won_a, won_b = together(lambda: claim_all(a, "w1", t0), lambda: claim_all(b, "w2", t0))
    assert not won_a & won_b
    assert won_a | won_b == set(ids)  # every event claimed exactly once

    # Both try again after the leases ran out: each event goes to exactly one of them again
    # (its holder renewing, or the other taking it over).
    t1 = t0 + timedelta(seconds=LEASE + 5)
    again_a, again_b = together(lambda: claim_all(a, "w1", t1), lambda: claim_all(b, "w2", t1))
    assert not again_a & again_b
    assert again_a | again_b == set(ids)

    # A worker that stops renewing loses every event to the one that does.
    t2 = t1 + timedelta(seconds=LEASE + 5)
    assert claim_all(b, "w2", t2) == set(ids)
    assert claim_all(a, "w1", t2) == set()


# --- mentions deferred until a rate limit passes -------------------------------------------------
def test_a_deferred_mention_is_nobodys_until_due_then_exactly_one_workers(
    stores: tuple[RoomStore, RoomStore],
) -> None:
    a, b = stores
    a.persist_batch([ev("$m", 1), ev("$other", 2, sender="@bob:example.org")], None)
    t0 = datetime.now(UTC)
    due = t0 + timedelta(seconds=30)
    assert a.claim_event("$m", "w1", LEASE, now=t0)
    assert not b.defer_event("$m", "w2", due, "deferred:user-cooldown:1", now=t0)  # w1's
    assert a.defer_event("$m", "w1", due, "deferred:user-cooldown:1", now=t0)
    assert a.held_outcome("$m") == "deferred:user-cooldown:1"
    assert a.waiting_mentions(ROOM, "@alice:example.org") == (1, 1)
    assert a.waiting_mentions(ROOM, "@bob:example.org") == (0, 1)
    assert a.claim_holders(now=t0) == set()  # the deferral is no worker
    # Before it is due neither worker (not even the one that deferred it) may take it.
    before = t0 + timedelta(seconds=29)
    for store, worker in ((a, "w1"), (b, "w2")):
        assert not store.claim_event("$m", worker, LEASE, now=before)
        found = store.claimable(worker, received_before=before, limit=10, now=before)
        assert [e.event_id for e, _ in found] == ["$other"]
    # Due: both sweep it up as nobody's (no takeover), both claim at once, one wins.
    after = t0 + timedelta(seconds=31)
    found = b.claimable("w2", received_before=after, limit=10, now=after)
    assert [(e.event_id, holder) for e, holder in found] == [("$m", None), ("$other", None)]
    assert b.expired_holder("$m", "w2", now=after) is None
    won = together(
        lambda: a.claim_event("$m", "w1", LEASE, now=after),
        lambda: b.claim_event("$m", "w2", LEASE, now=after),
    )
    assert sorted(won) == [False, True]
    assert a.waiting_mentions(ROOM, "@alice:example.org") == (0, 0)
    winner = a if won[0] else b
    winner.mark_handled("$m", "replied", "w1" if won[0] else "w2")
    assert a.held_outcome("$m") is None  # handled: no decision pending


def test_notices_count_by_user_and_room_while_on_their_way_and_after(store: RoomStore) -> None:
    store.persist_batch([ev("$n1", 1), ev("$n2", 2, sender="@bob:example.org")], None)
    t0 = datetime.now(UTC)
    assert store.notices_since(t0 - timedelta(seconds=60), room_id=ROOM) == 0
    assert store.hold_outcome("$n1", "w1", "notice:too-many-waiting")
    assert store.held_outcome("$n1") == "notice:too-many-waiting"
    since = t0 - timedelta(seconds=60)
    assert store.notices_since(since, user="@alice:example.org") == 1  # on its way
    store.mark_handled("$n1", "notice:too-many-waiting", "w1")
    assert store.notices_since(since, user="@alice:example.org") == 1
    assert store.notices_since(since, user="@bob:example.org") == 0
    assert store.notices_since(since, room_id=ROOM) == 1
    assert store.notices_since(datetime.now(UTC) + timedelta(seconds=1), room_id=ROOM) == 0


# --- reply claims --------------------------------------------------------------------------------
def test_two_workers_claiming_the_same_replies(stores: tuple[RoomStore, RoomStore]) -> None:
    a, b = stores
    ids = [f"$q{i:03d}" for i in range(100)]

    def claim_all(store: RoomStore, body: str) -> list[ReplyClaim]:
        return [claim_reply(store, i, body) for i in ids]

    claims_a, claims_b = together(lambda: claim_all(a, "from a"), lambda: claim_all(b, "from b"))
    for qid, ca, cb in zip(ids, claims_a, claims_b, strict=True):
        assert sorted((ca.state, cb.state)) == ["new", "pending"], qid
        # Whoever lost sends exactly what the winner claimed, with the same transaction id.
        assert (ca.txn_id, ca.body) == (cb.txn_id, cb.body) == (f"txn-{qid}", ca.body)
    assert len(a.pending_replies()) == 100


# --- the rate limits' history --------------------------------------------------------------------
def test_reply_history_counts_every_workers_live_replies(
    stores: tuple[RoomStore, RoomStore],
) -> None:
    a, b = stores
    a.persist_batch(
        [ev("$1", sender="@u:x"), ev("$2", sender="@v:x"), ev("$3", sender="@u:x")], None
    )
    start = datetime.now(UTC)
    assert a.replies_since(ROOM, start - timedelta(seconds=60)) == 0
    assert a.last_reply_to("@u:x") is None
    claim_reply(a, "$1")
    claim_reply(b, "$2")
    b.mark_reply_sent("$2", "$r2")
    claim_reply(b, "$3")
    b.mark_reply_rejected("$3")  # never appeared: does not count
    assert a.replies_since(ROOM, start - timedelta(seconds=1)) == 2
    assert b.replies_since(ROOM, datetime.now(UTC) + timedelta(seconds=1)) == 0
    assert b.replies_since("!other:x", start - timedelta(seconds=1)) == 0
    last = b.last_reply_to("@u:x")
    assert last is not None and last.tzinfo is not None
    assert start - timedelta(seconds=1) <= last <= datetime.now(UTC)
    assert b.last_reply_to("@nobody:x") is None
