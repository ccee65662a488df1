"""The digests' claims on a real database (SQLite and PostgreSQL): one claim per period
however many workers ask, a dead worker's claim taken over only after the lease, and posted
or refused periods never claimed again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.store.database import Database
from bot.store.digests import DigestStore
from bot.store.models import DigestRow, utcnow

LEASE = timedelta(minutes=2)


@pytest.fixture
def stores(database_url: str) -> Iterator[tuple[DigestStore, DigestStore]]:
    """Two stores on one database, each with its own connections (as two workers)."""
    a, b = Database(database_url), Database(database_url)
    a.create_schema()
    yield DigestStore(a), DigestStore(b)
    a.close()
    b.close()


def test_one_claim_per_period_and_posted_periods_stay_posted(
    stores: tuple[DigestStore, DigestStore],
) -> None:
    a, b = stores
    claim = a.claim("2026-11-30T08:00Z", "worker-a", lease=LEASE)
    assert claim is not None and (claim.state, claim.claimed_by, claim.text) == (
        "pending",
        "worker-a",
        None,
    )
    assert b.claim("2026-11-30T08:00Z", "worker-b", lease=LEASE) is None  # held, young
    a.set_text("2026-11-30T08:00Z", "# Digest", "!maint:x")
    a.mark_posted("2026-11-30T08:00Z", "$posted")
    assert b.claim("2026-11-30T08:00Z", "worker-b", lease=timedelta(0)) is None
    done = b.get("2026-11-30T08:00Z")
    assert done is not None
    assert (done.state, done.event_id, done.room_id, done.text) == (
        "posted",
        "$posted",
        "!maint:x",
        "# Digest",
    )
    assert done.posted_at is not None
    # Another period is free.
    assert b.claim("2026-12-07T08:00Z", "worker-b", lease=LEASE) is not None


def test_a_dead_workers_claim_is_taken_over_after_the_lease_with_its_text(
    stores: tuple[DigestStore, DigestStore],
) -> None:
    a, b = stores
    assert a.claim("p", "worker-a", lease=LEASE) is not None
    a.set_text("p", "# The words worker-a composed", None)
    assert b.claim("p", "worker-b", lease=LEASE) is None
    with a.db.session() as s:  # worker-a died three minutes ago
        s.execute(update(DigestRow).values(claimed_at=utcnow() - timedelta(minutes=3)))
    taken = b.claim("p", "worker-b", lease=LEASE)
    assert taken is not None
    assert (taken.claimed_by, taken.text) == ("worker-b", "# The words worker-a composed")
    assert a.claim("p", "worker-a", lease=LEASE) is None  # and now worker-b holds it


def test_a_refused_digest_is_kept_and_not_retried(
    stores: tuple[DigestStore, DigestStore],
) -> None:
    a, b = stores
    assert a.claim("p", "worker-a", lease=LEASE) is not None
    a.set_text("p", "# Digest", "!maint:x")
    a.mark_failed("p", "M_FORBIDDEN: not in the room")
    assert b.claim("p", "worker-b", lease=timedelta(0)) is None
    [kept] = b.recent()
    assert (kept.state, kept.error, kept.text) == (
        "failed",
        "M_FORBIDDEN: not in the room",
        "# Digest",
    )


def test_many_workers_racing_for_one_period_get_one_claim(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(6)]
    databases[0].create_schema()
    won: list[str] = []
    start = threading.Barrier(len(databases))

    def worker(n: int) -> None:
        start.wait()
        if DigestStore(databases[n]).claim("race", f"worker-{n}", lease=LEASE) is not None:
            won.append(f"worker-{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(len(databases))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for db in databases:
            db.close()
    assert len(won) == 1


def test_recent_lists_digests_with_a_text_newest_first(
    stores: tuple[DigestStore, DigestStore],
) -> None:
    a, _ = stores
    for n, period in enumerate(["p1", "p2", "p3"]):
        assert a.claim(period, "w", lease=LEASE) is not None
        if n != 1:  # p2 was claimed but nothing composed yet: not listed
            a.set_text(period, f"# {period}", None)
    assert [d.period for d in a.recent()] == ["p3", "p1"]
    assert [d.period for d in a.recent(limit=1)] == ["p3"]
