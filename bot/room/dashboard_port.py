"""What the maintainers' dashboard may do to the running worker, and nothing more.

The web side (``bot.web.context.context_for``) builds its ``WebContext`` from a
``DashboardPort``; the port never imports the web, and the room never imports the port's user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np

from bot.answering.reply import SuggestedReply
from bot.metrics import Metrics
from bot.room.index_jobs import IndexJobs
from bot.room.learning import RoomLearner
from bot.room.replies import ReplySender
from bot.settings import Settings
from bot.store.database import Database
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)

T = TypeVar("T")
ReadyCheck = Callable[[], tuple[bool, str]]


class ServedIndex(Protocol):
    """What the dashboard may read of the index an answerer serves, read at each call (a hot
    swap replaces the index): ``bot.room.answerer.LiveAnswerer`` is one."""

    def manifest(self) -> dict[str, Any]:
        """The served index's manifest (a copy)."""
        ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """Blocking, unit-normalised embeddings of ``texts`` with the index's encoder."""
        ...


class DashboardPort:
    """Owns the dashboard's narrow view of the worker: its settings, store and metrics, its
    readiness, the answerer run on the worker's one CPU thread, the served index (when there is
    one), posting a maintainer's reply (sent by the room's ``ReplySender``, then learnt as a past
    answer), a rebuild (when the worker can re-index), and telling the worker that past answers
    changed. Built by ``RoomService`` from its parts."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        metrics: Metrics,
        *,
        ready: ReadyCheck,
        answer: Callable[[str], SuggestedReply],
        index: ServedIndex | None,
        executor: ThreadPoolExecutor,
        replies: ReplySender,
        learner: RoomLearner,
        jobs: IndexJobs,
    ) -> None:
        self.settings = settings
        self.store = store
        self.db: Database = store.db
        self.metrics = metrics
        self.ready = ready
        self.answer = answer
        self._executor = executor
        self._replies = replies
        self._learner = learner
        # None where there is nothing to offer: no index to read, no re-index to run.
        self.encode: Callable[[list[str]], np.ndarray] | None = (
            index.encode if index is not None else None
        )
        self.index_manifest: Callable[[], dict[str, Any]] | None = (
            index.manifest if index is not None else None
        )
        self.rebuild: Callable[[], Awaitable[None]] | None = (
            jobs.start_rebuild if jobs.reindex is not None else None
        )

    async def run_cpu(self, fn: Callable[[], T]) -> T:
        """Run a blocking callable in the worker's one CPU thread (model, FAISS)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def post(self, question_event_id: str, markdown: str, maintainer: str) -> str:
        """Post a maintainer's reply as the bot in the question's thread, mentioning the asker;
        it becomes a past answer credited to them. Returns the reply's event id.

        A send that keeps failing raises a ``TransientError`` whose message the dashboard
        shows next to the kept text; an unknown question, ``LookupError``.
        """
        question, reply_id = await self._replies.post(question_event_id, markdown, maintainer)
        await self._learner.learn_dashboard_answer(question, reply_id, maintainer, markdown)
        return reply_id

    def past_answers_changed(self) -> None:
        """A past answer changed on the dashboard (a pair approved): re-publish the index."""
        self._learner.changed.set()
