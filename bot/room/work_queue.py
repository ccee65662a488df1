"""The bounded queue between the event sources (reader, sweeper, deferred mentions) and the
answer loop."""

from __future__ import annotations

import asyncio

from bot.chat.events import RoomEvent


class WorkQueue:
    """Owns the bounded queue of events to handle and the ids in it. An event is queued once
    however many sources offer it (the reader and the sweeper may both), until the answer loop
    :meth:`release`\\ s it. A full queue makes ``put`` wait: backpressure, not unbounded memory.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[RoomEvent] = asyncio.Queue(maxsize=maxsize)
        self._ids: set[str] = set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        """Events queued here and not yet released (taken ones included)."""
        return len(self._ids)

    def qsize(self) -> int:
        """Events waiting in the queue itself."""
        return self._queue.qsize()

    def free(self) -> int:
        return self._queue.maxsize - self._queue.qsize()

    async def put(self, event: RoomEvent) -> None:
        if event.event_id in self._ids:
            return
        self._ids.add(event.event_id)
        await self._queue.put(event)

    async def get(self, timeout: float) -> RoomEvent | None:
        """The next event, or None when none came within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout=timeout)
        except TimeoutError:
            return None

    def release(self, event_id: str) -> None:
        """Done with it here (handled, deferred, or another worker's): it may be queued again."""
        self._ids.discard(event_id)
