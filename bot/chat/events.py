"""Transport-neutral chat types: what a room transport yields and what it is asked to send.

Both transports (Matrix/Gitter in ``bot.gitter_client``, the local room later) speak in these
types, so the service never sees a protocol library's objects.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

# A server's clock may be off, but a timestamp later than this ahead of ours is not a clock
# error: it is replaced by the time we received the event (so is one before 1970).
MAX_CLOCK_AHEAD_MS = 24 * 3600 * 1000


def checked_origin_ts(value: object, received_ms: int | None = None) -> int:
    """``origin_server_ts`` if it is an int from 0 to a day ahead of now, else the receive time.

    A homeserver relays what the sender's server claims; 2^53-1 (or a string) must not reach
    the database as the time a question was asked.
    """
    now = int(time.time() * 1000) if received_ms is None else received_ms
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= now + (MAX_CLOCK_AHEAD_MS)
    ):
        return value
    return now


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
    def answers(self) -> tuple[str, ...]:
        """``answered_event_ids(self)``: its thread's root, then the message it replies to."""
        return answered_event_ids(self)

    @property
    def answered(self) -> str | None:
        """``answered_event_id(self)``: its thread's root, else the message it replies to."""
        return answered_event_id(self)

    @property
    def thread_root(self) -> str:
        """The root to reply under: the thread this message is in, else the message itself."""
        return thread_of(self) or self.event_id


class Relations(Protocol):
    """What a message says it relates to: a ``RoomEvent``, a stored row, an insights record."""

    @property
    def rel_type(self) -> str | None: ...
    @property
    def relates_to(self) -> str | None: ...
    @property
    def in_reply_to(self) -> str | None: ...


def thread_of(event: Relations) -> str | None:
    """The root of the thread this message is in, or None outside a thread."""
    return event.relates_to if event.rel_type == "m.thread" and event.relates_to else None


def answered_event_ids(event: Relations) -> tuple[str, ...]:
    """Every message this one answers: its thread's root, then the message it replies to
    (each once; empty for a message that is neither in a thread nor a reply)."""
    return tuple(dict.fromkeys(e for e in (thread_of(event), event.in_reply_to) if e))


def answered_event_id(event: Relations) -> str | None:
    """The one message this one answers: its thread's root, else the message it replies to."""
    return thread_of(event) or event.in_reply_to


# Room versions in which the creator has no special power (from 12 on, creators outrank all).
_VERSIONS_WITHOUT_CREATOR_POWER = frozenset(str(n) for n in range(1, 12))
CREATOR_LEVEL = 2**53  # "infinite": above any level a power_levels event can hold


@dataclass(frozen=True)
class PowerLevels:
    """What the bot reads of a room's ``m.room.power_levels``: each user's level and the
    level a redaction of someone else's message needs. ``creators``: the room's creators
    where the room version gives them unlimited power (12 and later)."""

    users: Mapping[str, int] = field(default_factory=dict)
    users_default: int = 0
    redact: int = 50  # the spec's default
    creators: frozenset[str] = frozenset()

    def of(self, user: str) -> int:
        if user in self.creators:
            return CREATOR_LEVEL
        return self.users.get(user, self.users_default)

    @classmethod
    def from_content(cls, content: object, creators: frozenset[str] = frozenset()) -> PowerLevels:
        """From the event's content; values of the wrong type get the spec's defaults."""
        if not isinstance(content, Mapping):
            return cls(creators=creators)

        raw_users = content.get("users")
        pairs = raw_users.items() if isinstance(raw_users, Mapping) else ()
        users = {u: n for u, v in pairs if isinstance(u, str) and (n := _level(v)) is not None}
        return cls(
            users=users,
            users_default=_or(_level(content.get("users_default")), 0),
            redact=_or(_level(content.get("redact")), 50),
            creators=creators,
        )


def creators_of(create_event: Mapping[str, Any]) -> frozenset[str]:
    """Who created the room, from its ``m.room.create`` event, where that gives unlimited
    power (room version 12 on: the sender and ``additional_creators``); else nobody."""
    content = create_event.get("content")
    if not isinstance(content, Mapping):
        return frozenset()
    if str(content.get("room_version", "1")) in _VERSIONS_WITHOUT_CREATOR_POWER:
        return frozenset()
    extra = content.get("additional_creators")
    names = [create_event.get("sender"), *(extra if isinstance(extra, list) else [])]
    return frozenset(n for n in names if isinstance(n, str))


def _level(value: object) -> int | None:
    """A power level from JSON: an integer within JSON's safe range (bool is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not abs(value) < 2**53:  # NaN and infinities too
        return None
    return int(value)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def parse_event(room_id: str, raw: Mapping[str, Any], *, origin: str = "live") -> RoomEvent | None:
    """A ``RoomEvent`` for a message, reaction or redaction event dict, else ``None`` (state).

    Reactions keep their key (the emoji) in ``body`` and their target in ``relates_to``;
    redactions keep the redacted event in ``relates_to``; an edit (``m.replace``) keeps the
    *new* text in ``body``. Defensive: every field may be missing or of the wrong type in what
    a server relays. Text is made storable (see ``storable_text``).
    """
    event = _parse_event(room_id, raw, origin=origin)
    return _storable_event(event) if event is not None else None


# Lone surrogates (what a JSON "\ud800" escape or an undecodable byte becomes in a str) cannot
# be encoded as UTF-8, so SQLite, PostgreSQL and every web response would raise on them; NUL
# is refused by PostgreSQL's text columns. One such character must not fail a sync batch.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """``value`` with each lone surrogate and NUL replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", value)


def _storable_event(event: RoomEvent) -> RoomEvent:
    changes: dict[str, Any] = {}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str) and _UNSTORABLE.search(value):
            changes[f.name] = storable_text(value)
    if any(_UNSTORABLE.search(u) for u in event.mentions):
        changes["mentions"] = tuple(storable_text(u) for u in event.mentions)
    return replace(event, **changes) if changes else event


def _parse_event(room_id: str, raw: Mapping[str, Any], *, origin: str) -> RoomEvent | None:
    kind = raw.get("type")
    if kind not in ("m.room.message", "m.reaction", "m.room.redaction"):
        return None
    event_id = raw.get("event_id")
    sender = raw.get("sender")
    if not isinstance(event_id, str) or not isinstance(sender, str):
        return None
    content = raw.get("content")
    if not isinstance(content, Mapping):
        content = {}
    origin_ts = checked_origin_ts(raw.get("origin_server_ts"))
    if kind != "m.room.message":
        return _parse_non_message(
            room_id, str(kind), event_id, sender, origin_ts, raw, content, origin
        )
    relates = content.get("m.relates_to")
    relates = relates if isinstance(relates, Mapping) else {}
    reply = relates.get("m.in_reply_to")
    in_reply_to = reply.get("event_id") if isinstance(reply, Mapping) else None
    mentions = content.get("m.mentions")
    user_ids = mentions.get("user_ids") if isinstance(mentions, Mapping) else None
    body = content.get("body")
    formatted = content.get("formatted_body") if content.get("format") else None
    new_content = content.get("m.new_content")
    if relates.get("rel_type") == "m.replace" and isinstance(new_content, Mapping):
        # The edited text, not the "* ..." fallback; its HTML with it (a code block in it).
        body = new_content.get("body", body)
        formatted = new_content.get("formatted_body") if new_content.get("format") else None
    return RoomEvent(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        origin_ts=origin_ts,
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


def _parse_non_message(
    room_id: str,
    kind: str,
    event_id: str,
    sender: str,
    origin_ts: int,
    raw: Mapping[str, Any],
    content: Mapping[str, Any],
    origin: str,
) -> RoomEvent | None:
    if kind == "m.reaction":
        relates = content.get("m.relates_to")
        if not isinstance(relates, Mapping) or not isinstance(relates.get("event_id"), str):
            return None
        key = relates.get("key")
        return RoomEvent(
            room_id=room_id,
            event_id=event_id,
            sender=sender,
            origin_ts=origin_ts,
            event_type=kind,
            msgtype=None,
            body=key if isinstance(key, str) else "",
            rel_type="m.annotation",
            relates_to=relates["event_id"],
            origin=origin,
        )
    # m.room.redaction: "redacts" is top-level before room v11, in content from v11 on.
    target = raw.get("redacts", content.get("redacts"))
    if not isinstance(target, str):
        return None
    return RoomEvent(
        room_id=room_id,
        event_id=event_id,
        sender=sender,
        origin_ts=origin_ts,
        event_type=kind,
        msgtype=None,
        body="",
        relates_to=target,
        origin=origin,
    )
