"""What the maintainers' dashboard may do to the running service, kept apart from the room loop.

``RoomService`` owns one ``DashboardBridge``: it builds the ``WebContext`` the web app sees
(database, answerer, the CPU worker, posting, rebuilding), posts a maintainer's reply through
the room's transport as the bot, and turns that post into a past answer credited to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.answering.render import markdown_to_html
from bot.chat.events import RoomEvent
from bot.chat.transport import OutgoingReply
from bot.errors import MessageRejectedError, TransientError
from bot.room.learning import dashboard_answer
from bot.web.context import WebContext

if TYPE_CHECKING:
    from bot.room.service import RoomService

log = logging.getLogger(__name__)

# A reply posted from the dashboard is tried this often before the page shows the error.
DASHBOARD_SEND_ATTEMPTS = 3


class DashboardBridge:
    def __init__(self, service: RoomService) -> None:
        self.svc = service
        self._build: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Stop a rebuild started from the dashboard (the old index keeps serving)."""
        if self._build is not None and not self._build.done():
            self._build.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._build

    def web_context(self) -> WebContext:
        """What the web app may use: the database, the answerer, posting and rebuilding."""
        retriever = getattr(self.svc.answer, "retriever", None)

        async def run_cpu(fn: Callable[[], Any]) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self.svc.executor, fn)

        def encode(texts: list[str]) -> Any:
            # Read at call time: a hot swap replaces the answerer's retriever, not its encoder.
            return self.svc.answer.retriever.encoder.encode(texts)  # type: ignore[attr-defined]

        def index_manifest() -> dict[str, Any]:
            current = getattr(self.svc.answer, "retriever", None)
            return dict(current.index.manifest) if current is not None else {}

        return WebContext(
            settings=self.svc.settings,
            db=self.svc.store.db,
            store=self.svc.store,
            metrics=self.svc.metrics,
            ready=self.svc.readiness,
            answer=self.svc.answer,
            run_cpu=run_cpu,
            encode=encode if getattr(retriever, "encoder", None) is not None else None,
            post_reply=self.post,
            rebuild=self.start_rebuild if self.svc.reindex is not None else None,
            index_manifest=index_manifest if retriever is not None else None,
            local_room=getattr(self.svc.transport, "local_room", None),
            past_answers_changed=self.svc.past_answers_changed.set,
        )

    async def start_rebuild(self) -> None:
        """Start a full re-index in the background; one at a time."""
        if self.svc.reindex is None:
            return
        if self._build is not None and not self._build.done():
            log.info("a rebuild started from the dashboard is still running")
            return
        self._build = asyncio.create_task(
            self.svc._run_build("dashboard", self.svc.reindex), name="dashboard-rebuild"
        )

    async def post(self, question_event_id: str, markdown: str, maintainer: str) -> str:
        """Post a maintainer's reply as the bot in the question's thread, mentioning the asker.

        The post is recorded before it is sent, with a transaction id of its own that every
        retry reuses, so the room shows it once. A send that keeps failing raises a
        ``TransientError`` whose message the dashboard shows next to the kept text.
        """
        question = await self.svc._db(self.svc.store.event, question_event_id)
        if question is None:
            raise LookupError(f"the question {question_event_id} is not stored")
        post = await self.svc._db(
            self.svc.dashboard.claim_post, question_event_id, question.room_id, maintainer, markdown
        )
        outgoing = OutgoingReply(
            room_id=question.room_id,
            reply_to=question.event_id,
            thread_root=question.thread_root,
            body=markdown,
            formatted_body=markdown_to_html(markdown),
            txn_id=post.txn_id,
            mention=question.sender,
        )
        backoff = self.svc._backoff()
        attempt = 0
        while True:
            attempt += 1
            try:
                reply_id = await self.svc.transport.send_reply(outgoing)
                break
            except MessageRejectedError:
                await self.svc._db(self.svc.dashboard.mark_post_failed, post.id, "rejected")
                raise
            except TransientError as exc:
                self.svc.metrics.errors.labels("send").inc()
                if attempt >= DASHBOARD_SEND_ATTEMPTS:
                    await self.svc._db(self.svc.dashboard.mark_post_failed, post.id)
                    raise TransientError(
                        f"the room did not take the reply after {attempt} tries ({exc})"
                    ) from exc
                # Someone is waiting on the page: short pauses, not the sync loop's backoff.
                await asyncio.sleep(min(backoff.next_delay(), 2.0))
            except BaseException:
                await self.svc._db(self.svc.dashboard.mark_post_failed, post.id)
                raise
        await self.svc._db(self.svc.dashboard.mark_post_sent, post.id, reply_id)
        await self.svc._db(self.svc.dashboard.record_person_answer, question_event_id, maintainer)
        await self._learn_answer(question, reply_id, maintainer, markdown)
        log.info("%s posted to %s from the dashboard: %s", maintainer, question_event_id, reply_id)
        return reply_id

    async def _learn_answer(
        self, question: RoomEvent, reply_id: str, maintainer: str, markdown: str
    ) -> None:
        """A maintainer's post becomes a past answer, unless the question already has one."""
        if not self.svc.settings.learn_from_room:
            return

        def learn_it() -> int:
            stored = self.svc.store.pair_for_question(question.event_id)
            if stored is not None and stored.review == "approved":
                return 0  # the first trusted answer stays, as for answers in the room
            change = dashboard_answer(
                question,
                reply_event_id=reply_id,
                maintainer=maintainer,
                text=markdown.strip(),
                posted_at_ms=int(time.time() * 1000),
                permalink=self.svc._permalink,
            )
            return self.svc.store.apply_changes([change])

        try:
            changed = await self.svc._db(learn_it)
        except Exception:  # learning is best effort; the post itself went out
            log.exception("learning the dashboard answer to %s failed", question.event_id)
            return
        if changed:
            self.svc.past_answers_changed.set()
