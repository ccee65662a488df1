"""Replies the rate limits hold back: a mention waits for them, or its asker is told why."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bot.answering.policy import Limit, ReplyLimiter, defer_rounds, mention_action
from bot.chat.events import RoomEvent
from bot.errors import MessageRejectedError
from bot.room.outcome import ANSWERED_MEANWHILE, NOTICE_REJECTED, Kind, Outcome
from bot.room.replies import ReplySender
from bot.room.timing import StopSignal
from bot.room.work_queue import WorkQueue
from bot.settings import Settings
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)

# The one line a mention gets when it cannot wait for the rate limits (policy.mention_action).
MENTION_NOTICES = {
    "too-many-waiting": (
        "You have a few questions waiting for me already, so I can't take this one as well; "
        "I've put it in the maintainers' queue."
    ),
    "room-busy": (
        "The room is too busy for me to answer everyone right now; I've put your question in "
        "the maintainers' queue."
    ),
    "waited-too-long": (
        "I couldn't get to your question in time; I've put it in the maintainers' queue."
    ),
}
# A deferred mention is woken this long after it is due, so its claim has surely expired.
_WAKE_MARGIN_SECONDS = 0.05


class MentionHolds:
    """Owns what happens to a reply the rate limits hold back. A plain question is suppressed.
    A mention is a request: it is deferred until the limits pass (stored on the event, so a
    restart keeps it, and woken here when due), or its asker is told in one line why not."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        replies: ReplySender,
        queue: WorkQueue,
        stop: StopSignal,
        *,
        worker_id: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.replies = replies
        self.queue = queue
        self.stop = stop
        self.worker_id = worker_id
        # The limits count every worker's replies: they are read from the database.
        self.limiter = ReplyLimiter(
            settings.user_cooldown_seconds, settings.room_replies_per_minute, store
        )
        self._wakers: set[asyncio.Task[None]] = set()  # timers of this worker's deferred mentions

    async def held_back(
        self, event: RoomEvent, *, mentioned: bool, reply_to: RoomEvent | None = None
    ) -> tuple[bool, Outcome | None]:
        """(True, outcome) when the limits hold this reply back, (False, None) when it may go.
        ``reply_to``: where a notice goes when ``event`` is not a message to reply to (an
        edit: its question)."""
        held = (
            await asyncio.to_thread(self.store.held_outcome, event.event_id) if mentioned else None
        )
        if held and held.startswith("notice:"):  # decided before a restart: keep to it
            return True, await self._send_notice(event, Outcome.parse(held), reply_to)
        if held and held.startswith("deferred:") and await self._answered_meanwhile(event.event_id):
            return True, ANSWERED_MEANWHILE  # while it waited, a person answered it
        limit = await asyncio.to_thread(self.limiter.limit, event.room_id, event.sender)
        if limit is None:
            return False, None
        if not mentioned:
            return True, Outcome.suppressed(limit.reason)
        return True, await self._hold_mention(event, limit, held, reply_to)

    def cancel_wakers(self) -> None:
        """At stop: the deferred mentions wait in the database for the next sweep."""
        for waker in list(self._wakers):
            waker.cancel()

    async def _answered_meanwhile(self, event_id: str) -> bool:
        question = await asyncio.to_thread(self.store.question, event_id)
        return question is not None and question.status not in ("new", "suggested")

    async def _hold_mention(
        self, event: RoomEvent, limit: Limit, held: str | None, reply_to: RoomEvent | None
    ) -> Outcome | None:
        """Defer a mention until ``limit`` passes, or tell the asker in one line why not.

        The deferral is stored on the event (see ``RoomStore.defer_event``): a restart keeps it,
        and whichever worker claims it when due answers it, once. The notice is rate-limited
        itself; one that may not go either leaves the question to the maintainers' queue.
        """
        rounds = defer_rounds(held)
        for_user, in_room = await asyncio.to_thread(
            self.store.waiting_mentions, event.room_id, event.sender
        )
        action = mention_action(
            rounds=rounds,
            waiting_for_user=for_user,
            waiting_in_room=in_room,
            max_per_user=self.settings.deferred_mentions_per_user,
            max_per_room=self.settings.room_replies_per_minute,
        )
        if action == "defer":
            outcome = Outcome.deferred(limit.reason, rounds + 1)
            deferred = await asyncio.to_thread(
                self.store.defer_event, event.event_id, self.worker_id, limit.until, outcome.code
            )
            self.queue.release(event.event_id)
            if deferred:
                self._wake(event, limit.until)
            return outcome  # not marked handled either way: it is the deferral's, or another's
        told = await asyncio.to_thread(self.limiter.notice_limit, event.room_id, event.sender)
        if told:
            return Outcome.suppressed(limit.reason, told)
        return await self._send_notice(event, Outcome.notice(action), reply_to)

    async def _send_notice(
        self, event: RoomEvent, outcome: Outcome, reply_to: RoomEvent | None = None
    ) -> Outcome | None:
        """The one line saying why a mention is not answered; recorded before it is sent."""
        assert outcome.kind is Kind.NOTICE
        await asyncio.to_thread(
            self.store.hold_outcome, event.event_id, self.worker_id, outcome.code
        )
        text = MENTION_NOTICES.get(":".join(outcome.detail), MENTION_NOTICES["room-busy"])
        try:
            sent = await self.replies.notice(event, text, reply_to=reply_to)
        except MessageRejectedError as exc:
            log.error("the homeserver refused the notice to %s: %s", event.event_id, exc)
            return NOTICE_REJECTED
        return None if sent is None else outcome

    def _wake(self, event: RoomEvent, due: datetime) -> None:
        """Queue a deferred mention here when it is due; the sweepers are the fallback."""
        delay = max(0.0, (due - datetime.now(UTC)).total_seconds()) + _WAKE_MARGIN_SECONDS

        async def wake() -> None:
            if not await self.stop.sleep(delay):
                await self.queue.put(event)

        task = asyncio.create_task(wake(), name="deferred-mention")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)
