"""Who and what the bot answers: mentions, ignore rules, questions, cooldowns. Pure logic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.chat.events import RoomEvent

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

    def reply_times_since(self, room_id: str, since: datetime) -> list[datetime]: ...

    def last_reply_to(self, user: str) -> datetime | None: ...

    def notices_since(
        self, since: datetime, *, room_id: str | None = None, user: str | None = None
    ) -> int: ...


# A reply leaves the room's window this long after it was claimed.
ROOM_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class Limit:
    """Why a reply may not go out now, and when it may at the earliest (both limits counted)."""

    reason: str  # "user-cooldown" or "room-rate-limit"
    until: datetime


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

    def limit(self, room_id: str, user: str, now: datetime | None = None) -> Limit | None:
        """None when a reply may go out now, else the first reason and when both will pass."""
        now = now or datetime.now(UTC)
        reasons: list[tuple[str, datetime]] = []
        if self.user_cooldown > 0:
            last = self.history.last_reply_to(user)
            if last is not None and (now - last).total_seconds() < self.user_cooldown:
                reasons.append(("user-cooldown", last + timedelta(seconds=self.user_cooldown)))
        times = sorted(self.history.reply_times_since(room_id, now - ROOM_WINDOW))
        if len(times) >= self.room_per_minute:
            # The window frees a slot when enough of its oldest replies have left it.
            reasons.append(
                ("room-rate-limit", times[len(times) - self.room_per_minute] + ROOM_WINDOW)
            )
        if not reasons:
            return None
        return Limit(reasons[0][0], max(until for _, until in reasons))

    def check(self, room_id: str, user: str, now: datetime | None = None) -> str | None:
        """None when a reply may go out now, else the reason it may not."""
        limit = self.limit(room_id, user, now)
        return limit.reason if limit else None

    def notice_limit(self, room_id: str, user: str, now: datetime | None = None) -> str | None:
        """Why a one-line "can't answer this now" notice may not go out, or None.

        One per user per cooldown (at least a minute: the user was told already), and per room
        no more than the replies allowed per minute, counted apart from the replies: a flood
        of mentions can never make the bot flood the room with notices.
        """
        now = now or datetime.now(UTC)
        per_user = max(timedelta(seconds=self.user_cooldown), ROOM_WINDOW)
        if self.history.notices_since(now - per_user, user=user):
            return "told-already"
        if self.history.notices_since(now - ROOM_WINDOW, room_id=room_id) >= self.room_per_minute:
            return "room-notice-limit"
        return None


# Deferring a waiting mention again after its turn came: at most this many times (the room
# stayed busy): then the asker is told instead of waiting on.
MAX_DEFER_ROUNDS = 10


def defer_rounds(held_outcome: str | None) -> int:
    """How often the event was deferred, from its stored ``deferred:<reason>:<n>`` outcome."""
    if not held_outcome or not held_outcome.startswith("deferred:"):
        return 0
    count = held_outcome.rsplit(":", 1)[-1]
    return int(count) if count.isdigit() else 1


def mention_action(
    *,
    rounds: int,
    waiting_for_user: int,
    waiting_in_room: int,
    max_per_user: int,
    max_per_room: int,
) -> str:
    """What a mention that may not be answered now gets: ``"defer"`` (answered when the
    limit passes), or the reason the asker is told in one line why not.

    A mention that already waits keeps its place (up to ``MAX_DEFER_ROUNDS``); a new one
    joins the wait unless its asker (``max_per_user``) or the room (``max_per_room``) already
    has that many mentions waiting: a flood is told, not queued without end.
    """
    if rounds:
        return "defer" if rounds < MAX_DEFER_ROUNDS else "waited-too-long"
    if waiting_for_user >= max_per_user:
        return "too-many-waiting"
    if waiting_in_room >= max_per_room:
        return "room-busy"
    return "defer"
