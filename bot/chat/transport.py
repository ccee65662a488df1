"""The room transport contract: what a sync yields, what a reply sends, and the protocol
both transports (Matrix in ``bot.gitter_client``, the local room) implement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.chat.events import PowerLevels, RoomEvent


@dataclass(frozen=True)
class SyncBatch:
    """One /sync response: the new events in order, and the token to resume after them."""

    next_token: str
    events: Sequence[RoomEvent] = field(default_factory=tuple)


@dataclass(frozen=True)
class OutgoingReply:
    room_id: str
    reply_to: str  # the question's event id
    thread_root: str
    body: str  # Markdown / plain text fallback
    formatted_body: str  # HTML
    txn_id: str  # stable per question: a retried send is de-duplicated by the server
    mention: str | None = None  # user to notify

    def content(self) -> dict[str, Any]:
        """The ``m.room.message`` content every transport sends: an ``m.notice`` in the
        question's thread (with the reply fallback for clients without threads), Markdown in
        ``body``, HTML in ``formatted_body``, and an explicit mention of the asker."""
        return {
            "msgtype": "m.notice",
            "body": self.body,
            "format": "org.matrix.custom.html",
            "formatted_body": self.formatted_body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": self.thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": self.reply_to},
            },
            "m.mentions": {"user_ids": [self.mention]} if self.mention else {},
        }


class ChatTransport(Protocol):
    """Connect, iterate events, send, close: all network I/O of the room side lives here."""

    user_id: str
    # The bot's display name once connected (None: none set), for spotting mentions by name.
    display_name: str | None
    # Each room's power levels, kept current from the sync; the room worker reads them at use.
    power_levels: dict[str, PowerLevels]

    async def connect(self) -> None: ...

    async def sync(self, since: str | None) -> SyncBatch: ...

    async def send_reply(self, reply: OutgoingReply) -> str: ...

    async def close(self) -> None: ...
