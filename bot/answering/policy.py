"""Who and what the bot answers: mentions, ignore rules, questions, cooldowns. Pure logic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.chat import RoomEvent

_QUESTION_START = re.compile(
    r"^\s*(how|why|what|when|where|which|who|is|are|can|could|does|do|did|should|would|will|"
    r"has|have|any(one|body)?|help|i (can't|cannot|am unable|get|got|have|keep))\b",
    re.I,
)
_ERRORISH = re.compile(r"\b\w*(Error|Exception)\b|Traceback \(most recent call last\)")
_REPLY_FALLBACK = re.compile(r"\A(?:> [^\n]*\n)+\n?")
_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.S | re.I)
# ASCII, full-width (CJK) and Arabic question marks.
_QUESTION_MARKS = ("?", "\uff1f", "\u061f")


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    display_name: str | None = None

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    def _mention_pattern(self) -> str:
        """The bot's full id, or its localpart / display name with an optional ``@``, as a word.

        Not preceded by a word character, ``@``, ``.``, ``/`` or ``-`` (no URL path, e-mail or
        longer name), and not followed by a word character, ``-``, or ``.``/``@`` + word (no
        host name or e-mail); a full stop ending the sentence is fine.
        """
        names = [re.escape(self.localpart)]
        if self.display_name and self.display_name.strip():
            names.append(re.escape(self.display_name.strip()))
        return (
            r"(?<![\w@./-])(?:" + re.escape(self.user_id) + r"|@?(?:" + "|".join(names) + r"))"
            r"(?![\w-]|[.@]\w)"
        )

    def mentioned_in(self, event: RoomEvent) -> bool:
        """m.mentions, a matrix.to pill, or the name / localpart as a word in the body."""
        if self.user_id in event.mentions:
            return True
        if event.formatted_body:
            # The quoted message of a reply is not this message: a pill there is not ours.
            html = _MX_REPLY.sub("", event.formatted_body)
            if f"matrix.to/#/{self.user_id}" in html or (
                f"matrix.to/#/{self.user_id.replace('@', '%40')}" in html
            ):
                return True
        return (
            re.search(self._mention_pattern(), strip_reply_fallback(event.body), re.I) is not None
        )

    def strip_mention(self, text: str) -> str:
        return re.sub(self._mention_pattern() + r"[:,]?\s*", "", text, flags=re.I).strip()


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted ``> <@user> ...`` block that replies carry for old clients."""
    return _REPLY_FALLBACK.sub("", body)


def ignore_reason(event: RoomEvent, me: BotIdentity, ignore_users: frozenset[str]) -> str | None:
    """Why this event must never be answered, or None. Checked before anything else."""
    if event.sender == me.user_id:
        return "own-message"
    if event.event_type != "m.room.message":
        return "not-a-message"  # reactions, redactions: recorded for learning, never answered
    if event.sender in ignore_users:
        return "ignored-user"
    if event.is_edit:
        return "edit"
    if event.msgtype == "m.notice":
        return "notice"  # bots speak in notices: never answer one
    if event.msgtype not in ("m.text", "m.emote", None):
        return "not-text"
    if not strip_reply_fallback(event.body).strip():
        return "empty"
    return None


def looks_like_question(text: str) -> bool:
    text = text.strip()
    if not text:
        return False
    sample = text[:2000]
    readable = sum(1 for c in sample if c != "\ufffd" and (c.isprintable() or c.isspace()))
    if readable < 0.8 * len(sample):
        return False  # binary noise, not words: nothing to ask about
    return (
        any(mark in text for mark in _QUESTION_MARKS)
        or bool(_QUESTION_START.match(text))
        or bool(_ERRORISH.search(text))
    )


def question_text(event: RoomEvent, me: BotIdentity) -> str:
    return me.strip_mention(strip_reply_fallback(event.body))


class ReplyHistory(Protocol):
    """The replies already claimed, by every worker: ``RoomStore`` answers from its tables."""

    def replies_since(self, room_id: str, since: datetime) -> int: ...

    def last_reply_to(self, user: str) -> datetime | None: ...


@dataclass
class ReplyLimiter:
    """Per-user cooldown and per-room replies-per-minute, over the shared reply history.

    The history is the database's, not this process's: workers sharing a database share the
    limits. A reply counts from the moment it is claimed (before the send), so one that is
    still on its way counts too. Two workers checking at the same instant may both pass, so
    the limits can be exceeded by at most one reply per other worker, never more.
    """

    user_cooldown: float
    room_per_minute: int
    history: ReplyHistory

    def check(self, room_id: str, user: str, now: datetime | None = None) -> str | None:
        """None when a reply may go out now, else the reason it may not."""
        now = now or datetime.now(UTC)
        if self.user_cooldown > 0:
            last = self.history.last_reply_to(user)
            if last is not None and (now - last).total_seconds() < self.user_cooldown:
                return "user-cooldown"
        # A reply leaves the window 60 s after it was claimed.
        if self.history.replies_since(room_id, now - timedelta(seconds=60)) >= self.room_per_minute:
            return "room-rate-limit"
        return None
