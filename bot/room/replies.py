"""Every message the bot sends into the room, built, recorded, sent with retries and recorded."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from bot.answering.render import markdown_to_html
from bot.chat.events import RoomEvent
from bot.chat.transport import ChatTransport, OutgoingReply
from bot.errors import MessageRejectedError, TransientError
from bot.metrics import Metrics
from bot.room.outcome import ALREADY_REPLIED, SEND_REJECTED, Outcome
from bot.room.timing import Backoff, StopSignal
from bot.settings import Settings
from bot.store.dashboard_store import DashboardStore
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)

# A reply posted from the dashboard is tried this often before the page shows the error.
DASHBOARD_SEND_ATTEMPTS = 3
# Someone is waiting on the page: pauses between its tries stay short.
_DASHBOARD_MAX_PAUSE_SECONDS = 2.0


def txn_id_for(question_event_id: str) -> str:
    """Stable per question: a retried or repeated send is de-duplicated by the homeserver."""
    return "supportbot-" + hashlib.sha256(question_event_id.encode()).hexdigest()[:40]


def notice_txn_id_for(question_event_id: str) -> str:
    """Stable per question, apart from its reply's: a re-sent notice is de-duplicated too."""
    return "supportbot-notice-" + hashlib.sha256(question_event_id.encode()).hexdigest()[:40]


def _message_to(question: RoomEvent, body: str, txn_id: str) -> OutgoingReply:
    """A message in the question's thread that mentions its asker."""
    return OutgoingReply(
        room_id=question.room_id,
        reply_to=question.event_id,
        thread_root=question.thread_root,
        body=body,
        formatted_body=markdown_to_html(body),
        txn_id=txn_id,
        mention=question.sender,
    )


class ReplySender:
    """Owns every message the bot sends into the room: its answer to a question, the one-line
    notice to a mention the rate limits hold back, and a maintainer's post from the dashboard.
    Each goes to the question's thread with a transaction id that every retry reuses (the room
    shows it once), transient errors are retried with backoff, and the answer and the post
    are recorded before and after the send. ``sent`` counts the answers sent."""

    def __init__(
        self,
        settings: Settings,
        transport: ChatTransport,
        store: RoomStore,
        dashboard: DashboardStore,
        metrics: Metrics,
        stop: StopSignal,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.store = store
        self.dashboard = dashboard
        self.metrics = metrics
        self.stop = stop
        self.sent = 0

    async def reply(
        self,
        event: RoomEvent,
        body: str,
        *,
        confident: bool,
        reply_to: RoomEvent | None = None,
        question_id: str | None = None,
    ) -> Outcome | None:
        """Answer a question: claimed in the database, sent, recorded; None when a stop came
        first. A reply claimed before a restart is sent as it was claimed then.

        ``reply_to``: the question to answer, in its thread, when ``event`` (which keys the
        record) is not a message to reply to: an edit of that question. The question's status
        then follows this answer. ``question_id``: the question whose status follows it
        otherwise (the thread's root, for an answer to a follow-up in the thread).
        """
        target = reply_to or event
        question = question_id or target.event_id
        claim = await asyncio.to_thread(
            self.store.claim_reply,
            question_event_id=event.event_id,
            room_id=event.room_id,
            txn_id=txn_id_for(event.event_id),
            body=body,
            formatted_body=markdown_to_html(body),
            thread_root=target.thread_root,
        )
        if claim.state == "sent":
            return ALREADY_REPLIED
        outgoing = OutgoingReply(
            room_id=claim.room_id,
            reply_to=target.event_id,
            thread_root=claim.thread_root,
            body=claim.body,
            formatted_body=claim.formatted_body,
            txn_id=claim.txn_id,
            mention=event.sender,
        )
        try:
            reply_id = await self._send(outgoing)
        except MessageRejectedError as exc:
            log.error("the homeserver refused the reply to %s: %s", event.event_id, exc)
            await asyncio.to_thread(self.store.mark_reply_rejected, event.event_id)
            return SEND_REJECTED
        if reply_id is None:
            return None
        await asyncio.to_thread(self.store.mark_reply_sent, event.event_id, reply_id)
        if confident:
            await asyncio.to_thread(self.dashboard.record_bot_answer, question)
        else:
            await asyncio.to_thread(self.store.set_question_status, question, "new")
        self.sent += 1
        return Outcome.replied(confident=confident)

    async def notice(
        self, event: RoomEvent, text: str, *, reply_to: RoomEvent | None = None
    ) -> str | None:
        """Send a one-line notice to the asker (the caller records its decision first); its
        event id, or None when a stop came first. ``MessageRejectedError`` when refused.
        ``reply_to``: the question's thread it goes to when ``event`` is an edit of it."""
        target = reply_to or event
        return await self._send(_message_to(target, text, notice_txn_id_for(event.event_id)))

    async def post(
        self, question_event_id: str, markdown: str, maintainer: str
    ) -> tuple[RoomEvent, str]:
        """Post a maintainer's reply as the bot in the question's thread, mentioning the asker;
        the question counts as answered by them. Returns the question and the reply's id.

        The post is recorded before it is sent. A send that keeps failing raises a
        ``TransientError`` whose message the dashboard shows next to the kept text.
        """
        question = await asyncio.to_thread(self.store.event, question_event_id)
        if question is None:
            raise LookupError(f"the question {question_event_id} is not stored")
        post = await asyncio.to_thread(
            self.dashboard.claim_post, question_event_id, question.room_id, maintainer, markdown
        )
        outgoing = _message_to(question, markdown, post.txn_id)
        try:
            reply_id = await self._send(outgoing, tries=DASHBOARD_SEND_ATTEMPTS)
        except MessageRejectedError:
            await asyncio.to_thread(self.dashboard.mark_post_failed, post.id, "rejected")
            raise
        except TransientError as exc:
            await asyncio.to_thread(self.dashboard.mark_post_failed, post.id)
            raise TransientError(
                f"the room did not take the reply after {DASHBOARD_SEND_ATTEMPTS} tries ({exc})"
            ) from exc
        except BaseException:
            await asyncio.to_thread(self.dashboard.mark_post_failed, post.id)
            raise
        assert reply_id is not None  # with a number of tries, a send never gives up silently
        await asyncio.to_thread(self.dashboard.mark_post_sent, post.id, reply_id)
        await asyncio.to_thread(self.dashboard.record_person_answer, question_event_id, maintainer)
        log.info("%s posted to %s from the dashboard: %s", maintainer, question_event_id, reply_id)
        return question, reply_id

    async def _send(self, outgoing: OutgoingReply, *, tries: int | None = None) -> str | None:
        """Send, retrying transient errors with backoff.

        Without ``tries``: until it goes, or None when a stop came first. With ``tries``
        (someone waits on a page): short pauses, and the last error is raised.
        """
        backoff = Backoff.from_settings(self.settings)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.transport.send_reply(outgoing)
            except TransientError as exc:
                self.metrics.errors.labels("send").inc()
                if tries is not None and attempt >= tries:
                    raise
                delay = backoff.next_delay()
                if tries is not None:
                    await asyncio.sleep(min(delay, _DASHBOARD_MAX_PAUSE_SECONDS))
                    continue
                log.warning(
                    "reply to %s failed (%s); retry in %.1f s", outgoing.reply_to, exc, delay
                )
                if await self.stop.sleep(delay):
                    return None
