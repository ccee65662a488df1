"""The digest job over a real database (SQLite and PostgreSQL): composed from the store,
posted once per period whichever of several workers asks, retried on transient errors, kept
when the room refuses it; and the schedule's arithmetic.

The maintainers' room here is a recording poster: the real Matrix one is exercised against a
real Synapse in ``tests/room/test_digest_e2e.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.errors import MessageRejectedError, TransientError
from bot.room.digest_job import (
    RECHECK_SECONDS,
    DigestJob,
    digest_txn_id,
    due_to_post,
    scheduled_period,
    seconds_to_next,
)
from bot.room.timing import StopSignal
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.digests import DigestStore
from bot.store.room_store import RoomStore
from tests.web.web_helpers import add_question

MAINTAINERS = "#maintainers:example.org"


class RecordingRoom:
    """Takes posts like a homeserver would, after failing as told."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.posts: list[tuple[str, str, str, str]] = []

    async def post_notice(
        self, room: str, body: str, formatted_body: str, txn_id: str
    ) -> tuple[str, str]:
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        self.posts.append((room, body, formatted_body, txn_id))
        return "!maintainers:example.org", f"$digest{len(self.posts)}"


@pytest.fixture
def databases(database_url: str) -> Iterator[list[Database]]:
    dbs = [Database(database_url), Database(database_url)]
    dbs[0].create_schema()
    yield dbs
    for db in dbs:
        db.close()


def job(db: Database, tmp_path: Path, room: RecordingRoom | None, **settings: Any) -> DigestJob:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "backoff_initial_seconds": 0.001,
        "backoff_max_seconds": 0.004,
        "maintainers_room": MAINTAINERS if room is not None else None,
        **settings,
    }
    return DigestJob(
        load_settings(**values),
        db,
        StopSignal(),
        worker_id=f"worker-{id(db)}",
        link=lambda q: f"https://chat.example/{q.event_id}",
        room=room,
    )


def test_the_digest_goes_to_the_maintainers_room_and_is_kept(
    databases: list[Database], tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    add_question(
        RoomStore(databases[0]),
        "$q1",
        "why is my [loss](javascript:x) nan?",
        ts=now_ms - 7_200_000,
        status="new",
    )
    room = RecordingRoom()
    digest = asyncio.run(job(databases[0], tmp_path, room).post("2026-11-30T08:00Z"))
    assert digest is not None and digest.text is not None
    [(to, body, html, txn)] = room.posts
    assert (to, txn, body) == (MAINTAINERS, digest_txn_id("2026-11-30T08:00Z"), digest.text)
    assert body.startswith("# Maintainers' digest, ")
    # The asker's text is escaped: their "link" stays text inside the digest's own link.
    assert r"[why is my \[loss\](javascript:x) nan?](https://chat.example/$q1)" in body
    assert "<h1>Maintainers' digest" in html and 'href="javascript' not in html
    assert (digest.state, digest.room_id, digest.event_id) == ("posted", MAINTAINERS, "$digest1")


def test_without_a_room_the_digest_is_posted_on_the_dashboard(
    databases: list[Database], tmp_path: Path
) -> None:
    digest = asyncio.run(job(databases[0], tmp_path, None).post("p"))
    assert digest is not None
    assert (digest.state, digest.room_id, digest.event_id) == ("posted", None, None)
    assert "Nothing is waiting." in (digest.text or "")
    assert [d.period for d in DigestStore(databases[0]).recent()] == ["p"]


def test_two_workers_post_a_period_once(databases: list[Database], tmp_path: Path) -> None:
    room = RecordingRoom()
    a, b = (job(db, tmp_path, room) for db in databases)

    async def both() -> list[Any]:
        return list(await asyncio.gather(a.post("p"), b.post("p")))

    results = asyncio.run(both())
    assert sum(r is not None for r in results) == 1
    assert len(room.posts) == 1
    # And later, a restarted worker finds it posted.
    assert asyncio.run(b.post("p")) is None
    assert len(room.posts) == 1


def test_transient_errors_are_retried_a_refusal_is_kept(
    databases: list[Database], tmp_path: Path
) -> None:
    flaky = RecordingRoom([TransientError("502"), TransientError("timeout")])
    posted = asyncio.run(job(databases[0], tmp_path, flaky).post("p1"))
    assert posted is not None and posted.state == "posted" and len(flaky.posts) == 1

    refusing = RecordingRoom([MessageRejectedError("M_TOO_LARGE")])
    failed = asyncio.run(job(databases[0], tmp_path, refusing).post("p2"))
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", "M_TOO_LARGE")
    assert failed.text is not None and failed.text.startswith("# Maintainers' digest")

    down = RecordingRoom([TransientError("502")] * 5)
    with pytest.raises(TransientError):
        asyncio.run(job(databases[0], tmp_path, down).post("p3", tries=2))
    kept = DigestStore(databases[0]).get("p3")
    assert kept is not None and kept.state == "pending"  # taken over after the lease


def test_the_schedule_posts_the_last_period_at_most_a_day_late() -> None:
    monday = "0 8 * * 1"
    at = datetime(2026, 11, 30, 8, 0, 30, tzinfo=UTC)  # a Monday, just after 08:00
    assert due_to_post(monday, at) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert scheduled_period(datetime(2026, 11, 30, 8, 0, tzinfo=UTC)) == "2026-11-30T08:00Z"
    # Down over the weekend's end, back on Monday evening: still posted.
    assert due_to_post(monday, at + timedelta(hours=10)) is not None
    # Back on Wednesday: it waits for next Monday instead of arriving two days late.
    assert due_to_post(monday, at + timedelta(days=2)) is None
    assert seconds_to_next(monday, at) == RECHECK_SECONDS  # a week away: look again sooner
    assert seconds_to_next("* * * * *", at) == 30.0


def test_the_schedule_loop_posts_the_due_period(databases: list[Database], tmp_path: Path) -> None:
    now = datetime.now(UTC)
    schedule = f"{now.minute} {now.hour} * * *"  # today, this very minute: due now
    room = RecordingRoom()
    worker = job(databases[0], tmp_path, room, digest_schedule=schedule)

    async def run() -> None:
        loop = asyncio.create_task(worker.schedule_loop())
        for _ in range(500):
            if room.posts:
                break
            await asyncio.sleep(0.02)
        worker.stop.set()
        await loop

    asyncio.run(run())
    [post] = room.posts
    period = scheduled_period(now.replace(second=0, microsecond=0))
    assert post[3] == digest_txn_id(period)
    assert [d.period for d in DigestStore(databases[0]).recent()] == [period]
