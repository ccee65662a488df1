"""Transport-neutral chat types: what a room transport yields and what it is asked to send.

Both transports (Matrix/Gitter in ``bot.gitter_client``, the local room later) speak in these
types, so the service never sees a protocol library's objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class RoomEvent:
    """A message event, normalised from the Matrix client-server format."""

    room_id: str
    event_id: str
    sender: str
    origin_ts: int
    event_type: str
    msgtype: str | None
    body: str
    formatted_body: str | None = None
    rel_type: str | None = None  # m.thread, m.replace, m.annotation, ...
    relates_to: str | None = None  # the event that rel_type points at
    in_reply_to: str | None = None
    mentions: tuple[str, ...] = ()  # m.mentions.user_ids
    origin: str = "live"  # live | gap | history

    @property
    def is_edit(self) -> bool:
        return self.rel_type == "m.replace"

    @property
    def thread_root(self) -> str:
        """The root to reply under: the thread this message is in, else the message itself."""
        if self.rel_type == "m.thread" and self.relates_to:
            return self.relates_to
        return self.event_id


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


class ChatTransport(Protocol):
    """Connect, iterate events, send, close: all network I/O of the room side lives here."""

    user_id: str

    async def connect(self) -> None: ...

    async def sync(self, since: str | None) -> SyncBatch: ...

    async def send_reply(self, reply: OutgoingReply) -> str: ...

    async def close(self) -> None: ...


def parse_event(room_id: str, raw: Mapping[str, Any], *, origin: str = "live") -> RoomEvent | None:
    """A ``RoomEvent`` for an ``m.room.message`` event dict, else ``None`` (state, redactions).

    Defensive: every field may be missing or of the wrong type in what a server relays.
    """
    if raw.get("type") != "m.room.message":
        return None
    event_id = raw.get("event_id")
    sender = raw.get("sender")
    if not isinstance(event_id, str) or not isinstance(sender, str):
        return None
    content = raw.get("content")
    if not isinstance(content, Mapping):
        content = {}
    relates = content.get("m.relates_to")
    relates = relates if isinstance(relates, Mapping) else {}
    reply = relates.get("m.in_reply_to")
    in_reply_to = reply.get("event_id") if isinstance(reply, Mapping) else None
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    ts = raw.get("origin_server_ts")
    body = content.get("body")
    formatted = content.get("formatted_body") if content.get("format") else None
    return RoomEvent(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        origin_ts=ts if isinstance(ts, int) else 0,
        event_type="m.room.message",
        msgtype=content.get("msgtype") if isinstance(content.get("msgtype"), str) else None,
        body=body if isinstance(body, str) else "",
        formatted_body=formatted if isinstance(formatted, str) else None,
        rel_type=relates.get("rel_type") if isinstance(relates.get("rel_type"), str) else None,
        relates_to=relates.get("event_id") if isinstance(relates.get("event_id"), str) else None,
        in_reply_to=in_reply_to if isinstance(in_reply_to, str) else None,
        mentions=tuple(u for u in user_ids if isinstance(u, str))
        if isinstance(user_ids, list)
        else (),
        origin=origin,
    )
