"""The maintainers' digest: composed from the store, posted once per scheduled period.

``supportbot run`` wakes at each time of ``SUPPORTBOT_DIGEST_SCHEDULE`` (and on start, for a
period whose time has passed within the last day and that nobody posted), claims the period in
the database (``bot/store/digests.py``: one worker of several wins) and posts the digest to
``SUPPORTBOT_MAINTAINERS_ROOM`` when one is set. Every digest is also kept for the dashboard's
Digests page, which is where it goes in the local room setup. ``supportbot digest --post``
posts one now, outside the schedule.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.errors import MessageRejectedError, RoomForbiddenError, TransientError
from bot.insights.digest import build_digest
from bot.insights.doc_gaps import doc_gaps_from_groups, group_doc_gaps
from bot.insights.metrics import Insights, window
from bot.insights.records import QuestionRecord
from bot.room.timing import Backoff, StopSignal
from bot.settings import Settings
from bot.store.database import Database
from bot.store.digests import Digest, DigestStore
from bot.store.insights_queries import load_rows, open_questions

log = logging.getLogger(__name__)

DOC_GAPS_SHOWN = 3
WAITING_SHOWN = 10
# A period whose time passed while no worker ran is still posted if it is this recent; an
# older one would arrive as a surprise days late, so it waits for the next period instead.
CATCH_UP = timedelta(days=1)
# Even with nothing due, look again this often: a claim whose worker died is taken over.
RECHECK_SECONDS = 600.0

Link = Callable[[QuestionRecord], str]


class RoomPoster(Protocol):
    """Posts a message to a room the bot does not serve (the maintainers' room)."""

    async def post_notice(
        self, room: str, body: str, formatted_body: str, txn_id: str
    ) -> tuple[str, str]:
        """Join ``room`` (an id or alias) if need be and post; (room id, event id)."""
        ...


def compose_digest(
    db: Database,
    settings: Settings,
    *,
    now: datetime,
    days: int,
    limit: int,
    link: Link,
) -> str:
    """The digest of the ``days`` before ``now`` against the ``days`` before those (blocking:
    it reads the store). Doc gaps are grouped by identical text: no model is loaded for it."""
    start_before, _ = window(now - timedelta(days=days), days)
    rows = load_rows(db, start_before, regulars=settings.regular_users)
    waiting, total = open_questions(db, limit=limit, regulars=settings.regular_users)

    def period(at: datetime) -> Insights:
        return rows.insights(settings, now=at, days=days)

    this, before = period(now), period(now - timedelta(days=days))
    candidates = this.doc_gap_candidates
    gaps = doc_gaps_from_groups(
        candidates, group_doc_gaps([q.text for q in candidates], None), DOC_GAPS_SHOWN
    )
    return build_digest(this, before, waiting, total, gaps, now=now, link=link)


def scheduled_period(due: datetime) -> str:
    """The period key of a scheduled time: the same on every worker."""
    return due.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def due_to_post(schedule: str, now: datetime) -> datetime | None:
    """The scheduled time whose digest is due at ``now``: the last one, unless it is more
    than ``CATCH_UP`` ago (the claim makes a second look at it a no-op)."""
    from croniter import croniter

    last: datetime = croniter(schedule, now).get_prev(datetime)
    return last if now - last <= CATCH_UP else None


def seconds_to_next(schedule: str, now: datetime) -> float:
    """How long to sleep: to the next scheduled time, at most ``RECHECK_SECONDS``."""
    from croniter import croniter

    following: datetime = croniter(schedule, now).get_next(datetime)
    return max(0.0, min((following - now).total_seconds(), RECHECK_SECONDS))


def digest_txn_id(period: str) -> str:
    """Stable per period: a retried or taken-over send is de-duplicated by the homeserver."""
    return "supportbot-digest-" + hashlib.sha256(period.encode()).hexdigest()[:40]


class DigestJob:
    """Owns the digest beside the room: the schedule loop, and posting one period exactly once
    (claim, compose, keep the text, send, record). ``room``: where a Matrix digest goes (None:
    the dashboard only). ``link``: a question's link in the digest."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        stop: StopSignal,
        *,
        worker_id: str,
        link: Link,
        room: RoomPoster | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.digests = DigestStore(db)
        self.stop = stop
        self.worker_id = worker_id
        self.link = link
        self.room = room if settings.maintainers_room else None

    async def schedule_loop(self) -> None:
        """Post each period's digest when its time comes (``SUPPORTBOT_DIGEST_SCHEDULE``)."""
        schedule = self.settings.digest_schedule
        if schedule == "off":
            return
        while not self.stop.is_set():
            due = due_to_post(schedule, datetime.now(UTC))
            if due is not None:
                try:
                    await self.post(scheduled_period(due))
                except asyncio.CancelledError:
                    raise
                except Exception:  # the room keeps being served; the claim is retried later
                    log.exception("posting the digest for %s failed", scheduled_period(due))
            if await self.stop.sleep(seconds_to_next(schedule, datetime.now(UTC))):
                return

    async def post(
        self,
        period: str,
        *,
        tries: int | None = None,
        days: int | None = None,
        limit: int = WAITING_SHOWN,
    ) -> Digest | None:
        """Post the digest for ``period`` unless another worker did or does: the digest as
        recorded, or None when it was not this worker's to post (or a stop came first).

        Transient send errors are retried with backoff (``tries``: at most that many, then
        the error is raised); a room that refuses the digest marks it failed, with the text
        kept for the dashboard. ``days``: the period's length (default: the setting);
        ``limit``: open questions listed."""
        lease = timedelta(seconds=self.settings.claim_lease_seconds)
        claim = await asyncio.to_thread(self.digests.claim, period, self.worker_id, lease=lease)
        if claim is None:
            log.info("digest for %s: already posted or being posted by another worker", period)
            return None
        text = claim.text
        if text is None:
            text = await asyncio.to_thread(
                compose_digest,
                self.db,
                self.settings,
                now=datetime.now(UTC),
                days=days or self.settings.digest_days,
                limit=limit,
                link=self.link,
            )
            room = self.settings.maintainers_room if self.room is not None else None
            await asyncio.to_thread(self.digests.set_text, period, text, room)
        event_id = await self._send(period, text, tries=tries)
        if event_id is None:  # refused (recorded) or stopped: not posted
            return await asyncio.to_thread(self.digests.get, period)
        await asyncio.to_thread(self.digests.mark_posted, period, event_id or None)
        where = f"to {self.settings.maintainers_room}" if self.room else "on the dashboard"
        log.info("digest for %s posted %s", period, where, extra={"period": period})
        return await asyncio.to_thread(self.digests.get, period)

    async def _send(self, period: str, text: str, *, tries: int | None) -> str | None:
        """The event id in the maintainers' room; "" with no room; None when it failed for
        good (recorded) or a stop came first."""
        if self.room is None or self.settings.maintainers_room is None:
            return ""
        from bot.answering.render import markdown_to_html

        backoff = Backoff.from_settings(self.settings)
        attempt = 0
        while True:
            attempt += 1
            try:
                _, event_id = await self.room.post_notice(
                    self.settings.maintainers_room,
                    text,
                    markdown_to_html(text),
                    digest_txn_id(period),
                )
                return event_id
            except TransientError:
                if tries is not None and attempt >= tries:
                    raise
                delay = backoff.next_delay()
                log.warning("posting the digest for %s failed; retry in %.1f s", period, delay)
                if await self.stop.sleep(delay):
                    return None
            except (MessageRejectedError, RoomForbiddenError) as exc:
                # Not joined and not allowed in, or the room refuses it: say so, keep the text.
                log.error(
                    "the maintainers' room %s refused the digest for %s: %s",
                    self.settings.maintainers_room,
                    period,
                    exc,
                )
                await asyncio.to_thread(self.digests.mark_failed, period, str(exc))
                return None
