"""Changes to the stored past-answer pairs: what learning decides and the store applies."""

from __future__ import annotations

from dataclasses import dataclass

from bot.corpus.past_answers import PastAnswer

APPROVED, PENDING, REJECTED = "approved", "pending", "rejected"


@dataclass(frozen=True)
class StoredPair:
    key: str
    established_by: str
    question_event_id: str | None
    answer_event_id: str | None
    review: str = APPROVED


@dataclass(frozen=True)
class Upsert:
    pair: PastAnswer
    room_id: str
    question_event_id: str
    answer_event_id: str
    review: str = APPROVED  # PENDING: searchable only once a maintainer approves it


@dataclass(frozen=True)
class UpdateText:
    event_id: str  # the question's or the answer's event id
    body: str


@dataclass(frozen=True)
class Remove:
    event_id: str  # pairs whose question or answer is this event go


Change = Upsert | UpdateText | Remove


def thread_key(question_event_id: str) -> str:
    return f"thread:{question_event_id}"
