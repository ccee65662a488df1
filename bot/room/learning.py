"""Learn past answers from the room: question → accepted answer pairs, kept up to date.

:func:`learn` is the pure decision logic: it looks at one new event (with lookups into what is
stored) and returns the changes to make to the past-answer table. :class:`RoomLearner` applies
it in the running worker, and records questions answered by people in the room.

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

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

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
from bot.room.roles import RoomRoles
from bot.settings import Settings
from bot.store.dashboard_store import DashboardStore
from bot.store.room_store import RoomStore
from bot.timeutil import utc_from_ms

log = logging.getLogger(__name__)

ACCEPT_KEYS = frozenset({"✅", "✔️", "✔", "☑️", "👍", "👍️", "+1"})


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
    root_id = event.answered
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
    root_id = answer.answered
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


class Permalinks:
    """Owns where a learnt past answer links to: matrix.to, or the local room's own page once
    the HTTP server has bound its port (``room_page``, given by the run wiring)."""

    def __init__(self, room_page: Callable[[int], str] | None = None) -> None:
        self.room_page = room_page
        self.port: int | None = None  # the bound HTTP port, once serving

    def __call__(self, room_id: str, event_id: str) -> str:
        if self.room_page is not None and self.port:
            return f"{self.room_page(self.port)}#{event_id}"
        return matrix_permalink(room_id, event_id)


class RoomLearner:
    """Owns what the worker learns as events arrive: past-answer pairs (through :func:`learn`),
    questions a person answered in the room, and a maintainer's dashboard post as a past
    answer. ``changed`` is set when the past answers changed: the re-publisher waits on it."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        dashboard: DashboardStore,
        roles: RoomRoles,
        *,
        bot_user: str,
        permalink: Permalinks,
    ) -> None:
        self.enabled = settings.learn_from_room
        self.store = store
        self.dashboard = dashboard
        self.roles = roles
        self.bot_user = bot_user
        self.permalink = permalink
        self.changed = asyncio.Event()

    async def learn(self, event: RoomEvent) -> None:
        if not self.enabled:
            return
        try:
            changed = await asyncio.to_thread(self._learn_sync, event)
        except Exception:  # learning is best effort; answering goes on
            log.exception("learning from %s failed", event.event_id)
            return
        if changed:
            log.info("past answers updated from %s (%d changes)", event.event_id, changed)
            self.changed.set()

    def _learn_sync(self, event: RoomEvent) -> int:
        changes = learn(
            event,
            lookup=self.store.event,
            pair_for_question=self.store.pair_for_question,
            pairs_touching=self.store.pairs_touching,
            is_trusted=self.roles.is_trusted,
            bot_user=self.bot_user,
            bot_replied=self.store.bot_replied,
            permalink=self.permalink,
            is_moderator=self.roles.is_moderator,
        )
        return self.store.apply_changes(changes) if changes else 0

    async def note_person_reply(self, event: RoomEvent) -> None:
        """A trusted answerer (a maintainer, or someone at the power-level threshold) replied in
        a question's thread or to the question itself: the question counts as answered by them.
        A "+1" or "same here" from anyone else answers nothing."""
        if not self.roles.is_trusted(event.room_id, event.sender):
            return
        if event.answers:
            await self._mark_answered(event.answers, event.sender, event)

    async def note_acceptance(self, reaction: RoomEvent) -> None:
        """The asker's ✅/👍 on someone's reply to their question: answered by that someone."""
        if reaction.body.strip() not in ACCEPT_KEYS or not reaction.relates_to:
            return
        reply = await asyncio.to_thread(self.store.event, reaction.relates_to)
        if (
            reply is None
            or reply.event_type != "m.room.message"
            or reply.sender in (self.bot_user, reaction.sender)
        ):
            return
        if reply.answers:
            await self._mark_answered(reply.answers, reply.sender, reaction, asker=reaction.sender)

    async def _mark_answered(
        self,
        targets: tuple[str, ...],
        responder: str,
        event: RoomEvent,
        *,
        asker: str | None = None,
    ) -> None:
        at = utc_from_ms(event.origin_ts) if event.origin_ts else None
        changed = await asyncio.to_thread(
            self.dashboard.note_reply_in_thread,
            targets,
            responder,
            at or datetime.now(UTC),
            asker=asker,
        )
        if changed:
            log.info("%s answered %d queued question(s) in the room", responder, changed)

    async def learn_dashboard_answer(
        self, question: RoomEvent, reply_id: str, maintainer: str, markdown: str
    ) -> None:
        """A maintainer's post becomes a past answer, unless the question already has one."""
        if not self.enabled:
            return

        def learn_it() -> int:
            stored = self.store.pair_for_question(question.event_id)
            if stored is not None and stored.review == APPROVED:
                return 0  # the first trusted answer stays, as for answers in the room
            change = dashboard_answer(
                question,
                reply_event_id=reply_id,
                maintainer=maintainer,
                text=markdown.strip(),
                posted_at_ms=int(time.time() * 1000),
                permalink=self.permalink,
            )
            return self.store.apply_changes([change])

        try:
            changed = await asyncio.to_thread(learn_it)
        except Exception:  # learning is best effort; the post itself went out
            log.exception("learning the dashboard answer to %s failed", question.event_id)
            return
        if changed:
            self.changed.set()
