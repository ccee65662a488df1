"""The plain records the Insights computations read: one per stored question, reply, dashboard
post, vote and room event (``bot.store.insights_queries`` loads them, times already UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from bot.timeutil import utc_from_ms


@dataclass(frozen=True)
class QuestionRecord:
    event_id: str
    asker: str
    text: str
    status: str
    asked_at: datetime
    confidence: float | None = None
    suggestion: str | None = None
    has_sources: bool = False
    answered_at: datetime | None = None
    answered_by: str | None = None
    first_question: bool = False  # the asker's first message in the room (``store.newcomers``)
    room_id: str = ""

    @property
    def href(self) -> str:
        return "/questions/" + quote(self.event_id, safe="")

    @property
    def has_suggestion(self) -> bool:
        # Without sources the stored "suggestion" is only "I couldn't find anything": nothing
        # a maintainer could accept.
        return self.has_sources and bool(self.suggestion and self.suggestion.strip())


@dataclass(frozen=True)
class ReplyRecord:
    question_event_id: str
    state: str  # pending / sent / rejected
    reply_event_id: str | None = None
    sent_at: datetime | None = None
    posted_by: str = "bot"


@dataclass(frozen=True)
class PostRecord:
    question_event_id: str
    state: str  # pending / sent / rejected
    body: str
    posted_by: str = ""
    reply_event_id: str | None = None
    sent_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class VoteRecord:
    question_event_id: str
    user_name: str
    vote: int  # +1 / -1


@dataclass(frozen=True)
class EventRecord:
    """A room event that may answer a question (a message) or judge the bot's reply (a reaction)."""

    event_id: str
    sender: str
    origin_ts: int  # ms since the epoch
    event_type: str = "m.room.message"
    msgtype: str | None = "m.text"
    body: str = ""
    rel_type: str | None = None
    relates_to: str | None = None
    in_reply_to: str | None = None

    @property
    def at(self) -> datetime:
        return utc_from_ms(self.origin_ts)
