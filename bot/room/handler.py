"""One room event in, one typed ``Outcome`` out: triage, the model, and the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace

from bot.answering.missing_info import (
    detect_missing,
    fuller_text,
    has_code_block,
    render_ask,
    supplies_missing,
)
from bot.answering.policy import BotIdentity, ignore_reason, looks_like_question, question_text
from bot.answering.reply import SuggestedReply
from bot.chat.events import RoomEvent, thread_of
from bot.room.learning import RoomLearner
from bot.room.mentions import MentionHolds
from bot.room.outcome import (
    ALREADY_REPLIED,
    FEEDBACK,
    HISTORY,
    NOT_A_QUESTION,
    TRIAGE,
    TRIAGE_LOW_CONFIDENCE,
    Kind,
    Outcome,
)
from bot.room.replies import ReplySender
from bot.room.roles import RoomRoles
from bot.settings import Settings
from bot.store.newcomers import first_questions
from bot.store.question_thread import MODERATOR_REDACTION
from bot.store.room_store import RoomStore

Answer = Callable[[str], SuggestedReply]

UNSURE_QUEUED = "I've also put your question in the maintainers' queue."
UNSURE_REPLY = (
    "I couldn't find a confident answer to this in the docs, so I've put your question in the "
    "maintainers' queue."
)
# Recorded so the dashboard blanks the message: a redaction by anyone but the message's
# sender counts only from a moderator.
MODERATOR_REDACTED = Outcome.parse(MODERATOR_REDACTION)


class EventHandler:
    """Owns the decision for one claimed room event: learn from it, triage it (ignored,
    feedback, not a question, history, ...), run the model on a question and store the
    suggestion for the dashboard, and reply through the ``ReplySender`` within the rate limits.
    ``me`` is the bot's identity, completed with its display name once connected."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        answer: Answer,
        executor: ThreadPoolExecutor,
        *,
        me: BotIdentity,
        learner: RoomLearner,
        roles: RoomRoles,
        holds: MentionHolds,
        replies: ReplySender,
    ) -> None:
        self.settings = settings
        self.store = store
        self.answer = answer
        self.executor = executor
        self.me = me
        self.learner = learner
        self.roles = roles
        self.holds = holds
        self.replies = replies
        self.ignore_users = frozenset(settings.ignore_users)

    async def handle(self, event: RoomEvent) -> Outcome | None:
        """What ``event`` came to; None when a stop came in the middle of sending."""
        await self.learner.learn(event)
        if event.event_type == "m.reaction" and event.sender != self.me.user_id:
            await self.learner.note_acceptance(event)
        if event.event_type == "m.room.redaction" and self.roles.is_moderator(
            event.room_id, event.sender
        ):
            return MODERATOR_REDACTED
        reason = ignore_reason(event, self.me, self.ignore_users)
        if reason == "edit":
            return await self._edit(event)
        if reason:
            return Outcome.ignored(reason)
        await self.learner.note_person_reply(event)
        existing = await asyncio.to_thread(self.store.reply, event.event_id)
        if existing is not None and existing.state == "sent":
            return ALREADY_REPLIED  # re-handled after a restart: keep its triage status
        mentioned = self.me.mentioned_in(event)
        root = thread_of(event)
        if (
            not mentioned
            and root is not None
            and (follow_up := await self._follow_up(root, event, edit=False)) is not None
        ):
            return await self._answer_again(event, follow_up, root=root)
        text, not_a_question = await self._question(event, mentioned=mentioned)
        if not_a_question is not None:
            return not_a_question
        if existing is None and mentioned and event.origin != "history":
            # The limits before the model: a mention they hold back without deferring it (the
            # asker is told why, or was told already) runs no model, so a flood of mentions
            # queues no CPU work. A deferred one (bounded per user and per room) still gets its
            # suggestion for the dashboard while it waits.
            held_back, outcome = await self.holds.held_back(event, mentioned=True)
            if held_back:
                await self._store_held_mention(event, text, outcome)
                return outcome
        return await self._answer(event, text, mentioned=mentioned)

    async def _follow_up(self, root: str, event: RoomEvent, *, edit: bool) -> str | None:
        """The fuller question to answer again when ``event`` is the asker's reply in the
        thread of the question ``root`` (with ``edit``: their edit of it) that the bot answered
        unsure with an ask ("To help, add: ..."), and it supplies what was asked for; the bot
        does this once per question, whichever came first. None otherwise."""
        if event.origin == "history" or event.sender == self.me.user_id:
            return None
        question = await asyncio.to_thread(self.store.question, root)
        if question is None or question.asker != event.sender or question.status != "new":
            return None  # not the asker's, or answered since (by the bot or a person)
        asked = detect_missing(question.text).kinds
        text = question_text(event, self.me)
        has_code = has_code_block(event.formatted_body)
        if not asked or not supplies_missing(
            asked, question.text, text, edit=edit, has_code=has_code
        ):
            return None
        if not await asyncio.to_thread(self.store.bot_replied, root):
            return None  # the bot never answered it, so it asked for nothing
        if await asyncio.to_thread(
            self.store.bot_followed_up, root, question.asker, besides=event.event_id
        ):
            return None
        return fuller_text(question.text, text, edit=edit)

    async def _edit(self, event: RoomEvent) -> Outcome | None:
        """An edit is answered only as a follow-up: the asker's edit of their question that
        adds what the bot asked for (``_follow_up``), answered in the question's thread. Any
        other edit is ignored, as the message it now is would be (a notice, empty, ...)."""
        now = replace(event, rel_type=None, relates_to=None)
        if event.relates_to is None or ignore_reason(now, self.me, self.ignore_users):
            return Outcome.ignored("edit")
        existing = await asyncio.to_thread(self.store.reply, event.event_id)
        if existing is not None and existing.state == "sent":
            return ALREADY_REPLIED
        question = await asyncio.to_thread(self.store.event, event.relates_to)
        if question is None:
            return Outcome.ignored("edit")
        text = await self._follow_up(question.event_id, event, edit=True)
        if text is None:
            return Outcome.ignored("edit")
        outcome = await self._answer_again(event, text, root=question.event_id, question=question)
        return None if outcome is None else outcome.for_edit()

    async def _answer_again(
        self, event: RoomEvent, text: str, *, root: str, question: RoomEvent | None = None
    ) -> Outcome | None:
        """Answer the follow-up on the fuller text, in the thread, as a request (a mention);
        the question ``root`` counts as answered by the bot when the answer is confident.
        ``question``: the edited question, replied to instead of ``event`` (the edit)."""
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.executor, self.answer, text)
        body = reply.markdown if reply.would_reply else self._unsure_body(reply)
        return await self.reply(
            event,
            body,
            confident=reply.would_reply,
            mentioned=True,
            reply_to=question,
            question_id=root,
        )

    async def _question(self, event: RoomEvent, *, mentioned: bool) -> tuple[str, Outcome | None]:
        """The question's text, and the outcome instead when the message asks nothing."""
        text = question_text(event, self.me)
        quoted = (
            await asyncio.to_thread(self.store.event, event.in_reply_to)
            if event.in_reply_to
            else None
        )
        if (
            quoted is not None
            and quoted.sender == self.me.user_id
            and not looks_like_question(text)
        ):
            # "thanks!" in reply to the bot: clients mention the replied-to sender; not a question.
            return text, FEEDBACK
        # "@bot ?" in reply to someone's message: the question is the message replied to.
        if (
            mentioned
            and len(text.split()) < 3
            and quoted is not None
            and ignore_reason(quoted, self.me, self.ignore_users) is None
        ):
            text = question_text(quoted, self.me)
        top_level = event.rel_type != "m.thread" and not event.in_reply_to
        if not mentioned and not (top_level and looks_like_question(text)):
            return text, NOT_A_QUESTION
        return text, None

    async def _store_held_mention(
        self, event: RoomEvent, text: str, outcome: Outcome | None
    ) -> None:
        """A held-back mention goes to triage: with a suggestion when it waits (deferred)."""
        if outcome is not None and outcome.kind is Kind.DEFERRED:
            await self._suggest(event, text, mentioned=True)
        elif await asyncio.to_thread(self.store.question, event.event_id) is None:
            await asyncio.to_thread(
                self.store.save_question,
                event,
                text,
                mentioned=True,
                confidence=None,
                suggestion=None,
                sources=[],
                index_version=None,
                status="new",
            )

    async def _answer(self, event: RoomEvent, text: str, *, mentioned: bool) -> Outcome | None:
        reply = await self._suggest(event, text, mentioned=mentioned)
        if event.origin == "history":
            return HISTORY  # first join: old questions go to triage, never get a late reply
        if not (mentioned or self.settings.reply_to_unmentioned):
            return TRIAGE
        if not reply.would_reply and not mentioned:
            return TRIAGE_LOW_CONFIDENCE
        body = reply.markdown if reply.would_reply else self._unsure_body(reply)
        if self.settings.welcome_newcomers and await self._first_time_asker(event):
            body = f"{self.settings.welcome_line}\n\n{body}"
        return await self.reply(event, body, confident=reply.would_reply, mentioned=mentioned)

    async def _first_time_asker(self, event: RoomEvent) -> bool:
        """Whether this question is its sender's first message in the room (the store's
        ``first_questions``); a person has one first message per room, so the welcome comes
        once at most. Maintainers (configured or by power level) and the bot never count."""
        if self.roles.is_trusted(event.room_id, event.sender):
            return False
        first = await asyncio.to_thread(
            first_questions, self.store.db, [event.event_id], regulars=self.settings.regular_users
        )
        return event.event_id in first

    async def _suggest(self, event: RoomEvent, text: str, *, mentioned: bool) -> SuggestedReply:
        """Run the model on the question and store it with the suggestion, for triage."""
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.executor, self.answer, text)
        await asyncio.to_thread(
            self.store.save_question,
            event,
            text,
            mentioned=mentioned,
            confidence=reply.confidence,
            suggestion=reply.markdown,
            sources=[asdict(s) for s in reply.sources],
            index_version=reply.index_version,
            status="suggested" if reply.sources else "new",
        )
        return reply

    def _unsure_body(self, reply: SuggestedReply) -> str:
        if self.settings.unsure_reply == "closest" and reply.sources:
            # compose_reply's unsure text already says so ("I'm not sure..."): keep it honest.
            return f"{reply.markdown}\n\n{UNSURE_QUEUED}"
        # The note alone still says what would decide it, as ``_follow_up`` reads it: a reply
        # in the thread that adds it is answered again, so the asker must have been asked.
        ask = render_ask(detect_missing(reply.question), again=True)
        return f"{UNSURE_REPLY}\n\n{ask}" if ask else UNSURE_REPLY

    async def reply(
        self,
        event: RoomEvent,
        body: str,
        *,
        confident: bool,
        mentioned: bool = False,
        reply_to: RoomEvent | None = None,
        question_id: str | None = None,
    ) -> Outcome | None:
        """Reply to ``event`` (or ``reply_to``; ``question_id``: see ``ReplySender.reply``)
        unless the rate limits hold it back (a first reply only)."""
        existing = await asyncio.to_thread(self.store.reply, event.event_id)
        if existing is None:
            held_back, outcome = await self.holds.held_back(
                event, mentioned=mentioned, reply_to=reply_to
            )
            if held_back:
                return outcome
        return await self.replies.reply(
            event, body, confident=confident, reply_to=reply_to, question_id=question_id
        )
