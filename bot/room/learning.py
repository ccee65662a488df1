"""Learn past answers from the room: question → accepted answer pairs, kept up to date.

Pure decision logic: :func:`learn` looks at one new event (with lookups into what is
stored) and returns the changes to make to the past-answer table.

* A reply (``m.thread`` or ``m.in_reply_to``) by a trusted answerer — a configured maintainer
  or someone at or above the power-level threshold — to someone else's message makes a pair;
  the first trusted reply wins. After a bot reply in that thread it is a correction.
* A ✅/👍 reaction by the asker on a reply proposes that reply: the pair waits as *pending*
  until a maintainer approves it on the dashboard (one person with two accounts could plant an
  answer otherwise). It never replaces a maintainer's or an approved pair; a trusted answer
  replaces a pair nobody approved.
* An edit (``m.replace``) by the original sender updates the stored question or answer text.
* A redaction of the question or the answer removes the pair, when it comes from that
  message's sender or a moderator (anyone may send a redaction event; the server applies it
  only for those two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.answering.policy import strip_reply_fallback
from bot.chat.events import RoomEvent
from bot.corpus.pair_changes import (
    APPROVED,
    PENDING,
    REJECTED,
    Change,
    Remove,
    StoredPair,
    UpdateText,
    Upsert,
    thread_key,
)
from bot.corpus.past_answers import PastAnswer, matrix_permalink

ACCEPT_KEYS = frozenset({"✅", "✔️", "✔", "☑️", "👍", "👍️", "+1"})


def _root_of(event: RoomEvent) -> str | None:
    if event.rel_type == "m.thread" and event.relates_to:
        return event.relates_to
    return event.in_reply_to


def learn(
    event: RoomEvent,
    *,
    lookup: Callable[[str], RoomEvent | None],
    pair_for_question: Callable[[str], StoredPair | None],
    pairs_touching: Callable[[str], list[StoredPair]],
    is_trusted: Callable[[str, str], bool],
    bot_user: str,
    bot_replied: Callable[[str], bool],
    permalink: Callable[[str, str], str] = matrix_permalink,
    is_moderator: Callable[[str, str], bool] = lambda _room, _user: False,
) -> list[Change]:
    if event.event_type == "m.room.redaction" and event.relates_to:
        if not pairs_touching(event.relates_to):
            return []
        target = lookup(event.relates_to)
        own = target is not None and target.sender == event.sender
        if own or is_moderator(event.room_id, event.sender):
            return [Remove(event.relates_to)]
        return []
    if event.event_type == "m.reaction":
        changes = _accept(
            event, lookup=lookup, pair_for_question=pair_for_question, bot_user=bot_user
        )
        return [_linked(c, permalink) for c in changes]
    if event.event_type != "m.room.message" or event.sender == bot_user:
        return []
    if event.is_edit and event.relates_to:
        original = lookup(event.relates_to)
        if (
            original is not None
            and original.sender == event.sender
            and pairs_touching(event.relates_to)
        ):
            return [UpdateText(event.relates_to, strip_reply_fallback(event.body))]
        return []
    root_id = _root_of(event)
    if root_id is None or not is_trusted(event.room_id, event.sender):
        return []
    question = lookup(root_id)
    if (
        question is None
        or question.event_type != "m.room.message"
        or question.sender in (event.sender, bot_user)
    ):
        return []
    stored = pair_for_question(root_id)
    if stored is not None and stored.review == APPROVED:
        return []  # the first trusted answer (or an approved accepted one) stays
    if bot_replied(root_id):
        how = "maintainer-correction"
    else:
        how = "maintainer-thread" if event.rel_type == "m.thread" else "maintainer-reply"
    return [_linked(_upsert(question, event, how), permalink)]


def _accept(
    reaction: RoomEvent,
    *,
    lookup: Callable[[str], RoomEvent | None],
    pair_for_question: Callable[[str], StoredPair | None],
    bot_user: str,
) -> list[Change]:
    if reaction.body.strip() not in ACCEPT_KEYS or not reaction.relates_to:
        return []
    answer = lookup(reaction.relates_to)
    if answer is None or answer.event_type != "m.room.message" or answer.sender == bot_user:
        return []
    root_id = _root_of(answer)
    question = lookup(root_id) if root_id else None
    if question is None or question.sender != reaction.sender or answer.sender == reaction.sender:
        return []  # only the asker accepts, and not their own message
    stored = pair_for_question(question.event_id)
    if stored is not None and (
        stored.review == APPROVED
        or (stored.review == REJECTED and stored.answer_event_id == answer.event_id)
    ):
        return []  # a maintainer's (or approved) pair stays; a rejected one is not re-proposed
    return [replace(_upsert(question, answer, "accepted-reaction"), review=PENDING)]


def dashboard_answer(
    question: RoomEvent,
    *,
    reply_event_id: str,
    maintainer: str,
    text: str,
    posted_at_ms: int,
    permalink: Callable[[str, str], str] = matrix_permalink,
) -> Upsert:
    """A maintainer's answer posted from the dashboard (sent as the bot, so the room alone
    would not credit it): the same kind of pair as a maintainer's thread answer."""
    answer = RoomEvent(
        room_id=question.room_id,
        event_id=reply_event_id,
        sender=maintainer,
        origin_ts=posted_at_ms,
        event_type="m.room.message",
        msgtype="m.notice",
        body=text,
    )
    change = _linked(_upsert(question, answer, "dashboard-post"), permalink)
    assert isinstance(change, Upsert)
    return change


def _linked(change: Change, permalink: Callable[[str, str], str]) -> Change:
    """Point a new pair at the room it came from (matrix.to, or the local room's own page)."""
    if not isinstance(change, Upsert):
        return change
    url = permalink(change.room_id, change.question_event_id)
    return replace(change, pair=replace(change.pair, url=url))


def _upsert(question: RoomEvent, answer: RoomEvent, how: str) -> Upsert:
    return Upsert(
        pair=PastAnswer(
            key=thread_key(question.event_id),
            question=strip_reply_fallback(question.body).strip(),
            answer=strip_reply_fallback(answer.body).strip(),
            url=matrix_permalink(question.room_id, question.event_id),
            asked_by=question.sender,
            answered_by=answer.sender,
            source="room",
            established_by=how,
        ),
        room_id=question.room_id,
        question_event_id=question.event_id,
        answer_event_id=answer.event_id,
    )
