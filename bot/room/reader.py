"""The room's /sync side: connect, long-poll, store each batch, queue the fresh events."""

from __future__ import annotations

import asyncio
import logging

from bot.chat.transport import ChatTransport, SyncBatch
from bot.errors import FatalError, TransientError
from bot.metrics import Metrics
from bot.room.timing import Backoff, StopSignal
from bot.room.work_queue import WorkQueue
from bot.settings import Settings
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)


def sync_silence_limit(settings: Settings) -> float:
    """Watchdog: a long-poll that outlives its timeout by this much is a dead connection."""
    return settings.sync_timeout_ms / 1000 + settings.sync_watchdog_seconds


class SyncReader:
    """Owns reading the room: connecting with backoff, then long-polling ``/sync``. Each
    batch's new events and the next sync token are stored in one transaction, then the fresh
    events are queued (a full queue makes the reader wait). A long-poll silent past the
    watchdog's limit is dropped and retried; so is a failed one, with backoff."""

    def __init__(
        self,
        settings: Settings,
        transport: ChatTransport,
        store: RoomStore,
        queue: WorkQueue,
        metrics: Metrics,
        stop: StopSignal,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.stop = stop

    async def connect(self) -> None:
        backoff = Backoff.from_settings(self.settings)
        while True:
            try:
                await self.transport.connect()
                return
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning("connect failed (%s); retrying in %.1f s", exc, delay)
                if await self.stop.sleep(delay):
                    raise FatalError("stopped before the homeserver could be reached") from exc

    async def read_loop(self) -> None:
        token = await asyncio.to_thread(self.store.sync_token)
        backoff = Backoff.from_settings(self.settings)
        while not self.stop.is_set():
            batch = await self._next_batch(token, backoff)
            if batch is None:
                continue
            fresh = await asyncio.to_thread(
                self.store.persist_batch, batch.events, batch.next_token
            )
            self.metrics.synced()
            for event in fresh:
                self.metrics.events_in.labels(event.event_type).inc()
            if token is None:
                log.info("first sync stored %d history events; listening", len(fresh))
            token = batch.next_token
            for event in fresh:
                await self.queue.put(event)

    async def _next_batch(self, token: str | None, backoff: Backoff) -> SyncBatch | None:
        """One long-poll; None (after a backoff pause) when it failed or went silent."""
        silent_after = sync_silence_limit(self.settings)
        try:
            batch = await asyncio.wait_for(self.transport.sync(token), timeout=silent_after)
        except TimeoutError:
            log.warning("sync silent for %.0f s (watchdog); reconnecting", silent_after)
            self.metrics.errors.labels("sync-watchdog").inc()
            await self.stop.sleep(backoff.next_delay())
            return None
        except TransientError as exc:
            delay = backoff.next_delay()
            log.warning("sync failed (%s); retry %d in %.1f s", exc, backoff.failures, delay)
            self.metrics.errors.labels("sync").inc()
            await self.stop.sleep(delay)
            return None
        if backoff.failures:
            log.info("sync recovered after %d failed attempts", backoff.failures)
        backoff.reset()
        return batch
