"""The ``ChatTransport`` over the embedded local room's timeline (``bot.store.local_room``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.chat.events import PowerLevels, RoomEvent, parse_event
from bot.chat.local_input import LocalRoomInputError
from bot.chat.transport import OutgoingReply, SyncBatch
from bot.errors import MessageRejectedError

log = logging.getLogger(__name__)

Raw = dict[str, Any]


class LocalTimeline(Protocol):
    """What the transport needs of the local room's stored timeline
    (``bot.store.local_room.LocalRoom`` is the one implementation); a protocol, so the chat
    layer does not import the store."""

    room_id: str
    bot_user: str

    def ensure(self) -> None: ...

    def head(self) -> int: ...

    def events_after(
        self, seq: int, limit: int = 100, max_bytes: int | None = None
    ) -> list[tuple[int, Raw]]: ...

    def recent(self, limit: int, max_bytes: int | None = None) -> list[tuple[int, Raw]]: ...

    async def wait(self, since_seq: int, timeout: float) -> bool: ...

    def send(
        self, sender: str, content: Mapping[str, Any], *, txn_id: str | None = None
    ) -> str: ...


class LocalTransport:
    """``ChatTransport`` over a ``LocalTimeline``: the same contract as ``MatrixTransport``."""

    def __init__(
        self,
        room: LocalTimeline,
        *,
        sync_timeout_ms: int = 30_000,
        history_depth: int = 20,
        timeline_limit: int = 100,
    ) -> None:
        self.local_room = room
        self.user_id = room.bot_user
        self.display_name: str | None = None
        self.room_ids = [room.room_id]
        # The bot is the room's admin, like a room creator; everyone else is at 0.
        self.power_levels: dict[str, PowerLevels] = {
            room.room_id: PowerLevels(users={room.bot_user: 100})
        }
        self.sync_timeout_ms = sync_timeout_ms
        self.history_depth = history_depth
        self.timeline_limit = max(1, timeline_limit)

    def __repr__(self) -> str:
        return f"LocalTransport({self.local_room.room_id!r})"

    async def connect(self) -> None:
        await asyncio.to_thread(self.local_room.ensure)
        log.info("local room %s ready as %s", self.local_room.room_id, self.user_id)

    async def sync(self, since: str | None) -> SyncBatch:
        """Events after ``since`` (waiting up to the timeout for one); the first call: history."""
        room = self.local_room
        start = self._parse_token(since)
        if start is not None:
            rows = await asyncio.to_thread(room.events_after, start, self.timeline_limit)
            if not rows and self.sync_timeout_ms > 0:
                if await asyncio.to_thread(room.head) < start:
                    log.warning("sync token %s is ahead of the local room; starting over", since)
                    start = None
                elif await room.wait(start, self.sync_timeout_ms / 1000):
                    rows = await asyncio.to_thread(room.events_after, start, self.timeline_limit)
        if start is None:
            # First sync: the recent past is read for triage, never answered (as on Matrix).
            head = await asyncio.to_thread(room.head)
            rows = await asyncio.to_thread(room.recent, self.history_depth)
            return SyncBatch(next_token=str(head), events=self._parse(rows, "history"))
        next_token = rows[-1][0] if rows else start
        return SyncBatch(next_token=str(next_token), events=self._parse(rows, "live"))

    @staticmethod
    def _parse_token(since: str | None) -> int | None:
        if since is None:
            return None
        try:
            value = int(since)
        except ValueError:
            # e.g. a Matrix token left in the database by an earlier run against a homeserver
            log.warning("sync token %r is not the local room's; starting over", since)
            return None
        return value if value >= 0 else None

    def _parse(self, rows: Sequence[tuple[int, Raw]], origin: str) -> tuple[RoomEvent, ...]:
        parsed = (parse_event(self.local_room.room_id, raw, origin=origin) for _, raw in rows)
        return tuple(e for e in parsed if e is not None)

    async def send_reply(self, reply: OutgoingReply) -> str:
        if reply.room_id != self.local_room.room_id:
            raise MessageRejectedError(f"not the local room: {reply.room_id}")
        content = reply.content()
        try:
            return await asyncio.to_thread(
                self.local_room.send, self.user_id, content, txn_id=reply.txn_id
            )
        except LocalRoomInputError as exc:
            raise MessageRejectedError(f"local room refused the reply: {exc}") from exc

    async def close(self) -> None:
        return None


def local_room_url(host: str, port: int) -> str:
    """The room page's address to print: a wildcard bind is reached through loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/room"
