"""The long-running room worker: transport → store → bounded queue → answerer → transport.

Two tasks share one bounded queue. The *reader* (``reader.py``) long-polls ``/sync``, writes
each batch's new events and the next sync token in one transaction, then enqueues the new
events (a full queue makes it wait: backpressure instead of unbounded memory). The *answer
loop* here handles one event at a time (``handler.py``): policy, retrieval in the single
worker thread, then at most one reply per question, claimed in the database before it is sent
with a transaction id derived from the question's event id (``replies.py``). Events are marked
handled only after that, so a crash anywhere re-handles them on restart, and the claim plus
the transaction id make sure the room still sees one reply.

Several workers (processes, one database) may run side by side: each syncs the rooms itself,
an event is fresh only for the worker whose insert stored it, and every worker claims an event
in the database (a lease, renewed while handling) before acting on it. A *sweeper*
(``claims.py``) picks up unhandled events nobody holds: those stored before a start, another
worker's backlog, and, once the lease has run out, the events of a worker that died mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from bot.answering.policy import BotIdentity
from bot.chat.events import RoomEvent
from bot.chat.transport import ChatTransport
from bot.corpus.past_answers import matrix_permalink
from bot.errors import FatalError, MessageRejectedError
from bot.metrics import Metrics
from bot.room.claims import Claims
from bot.room.dashboard_port import DashboardPort, ServedIndex
from bot.room.digest_job import DigestJob, Link, RoomPoster
from bot.room.handler import Answer, EventHandler
from bot.room.index_jobs import Build, IndexJobs
from bot.room.learning import Permalinks, RoomLearner
from bot.room.mentions import MentionHolds
from bot.room.outcome import SEND_REJECTED, Kind, Outcome
from bot.room.reader import SyncReader, sync_silence_limit
from bot.room.replies import ReplySender
from bot.room.roles import RoomRoles
from bot.room.timing import StopSignal
from bot.room.work_queue import WorkQueue
from bot.settings import Settings
from bot.store.dashboard_store import DashboardStore
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)


class HttpSide(Protocol):
    """The HTTP server (health probes, dashboard, local room) the run wiring builds on the
    worker's ``DashboardPort``: served while the worker runs (``bot.web.app.WebServer``)."""

    async def start(self) -> int | None:
        """Serve; the port bound (None if it cannot be told)."""
        ...

    async def close(self) -> None: ...


class RoomService:
    """Owns the worker's lifecycle: it builds the parts (reader, claims, handler, replies,
    learning, index jobs, the dashboard port), runs their tasks until a stop or until the
    reader or the answer loop ends, serves the HTTP side meanwhile, and says whether it is
    ready. The answer loop lives here: claim an event, handle it, record its outcome.

    ``republish``: re-publish the index with learnt past answers; ``reindex``: the scheduled
    full re-index; ``reload``: pick up an index published by ``supportbot index build``
    outside; ``index``: the served index the dashboard may read; ``http``: builds the HTTP side
    on the dashboard port; ``room_page``: the local room's page for a bound port, where learnt
    answers link to (none: matrix.to); ``digest_room``: posts the maintainers' digest to a
    Matrix room; ``digest_link``: a question's link in the digest (default: matrix.to).
    """

    def __init__(
        self,
        settings: Settings,
        transport: ChatTransport,
        store: RoomStore,
        answer: Answer,
        *,
        executor: ThreadPoolExecutor | None = None,
        republish: Build | None = None,
        reindex: Build | None = None,
        reload: Build | None = None,
        index: ServedIndex | None = None,
        http: Callable[[DashboardPort], HttpSide] | None = None,
        room_page: Callable[[int], str] | None = None,
        digest_room: RoomPoster | None = None,
        digest_link: Link | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.store = store
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer")
        self.worker_id = settings.resolved_worker_id
        self.stop = StopSignal()
        self.queue = WorkQueue(settings.queue_size)
        self.metrics = Metrics()
        self.metrics.watch_queue(self.queue.qsize)
        dashboard = DashboardStore(store.db)
        roles = RoomRoles(settings, transport)
        self.links = Permalinks(room_page)
        self.learner = RoomLearner(
            settings, store, dashboard, roles, bot_user=transport.user_id, permalink=self.links
        )
        # Set when learning changed the past answers; the re-publisher waits on it.
        self.past_answers_changed = self.learner.changed
        self.replies = ReplySender(settings, transport, store, dashboard, self.metrics, self.stop)
        self.holds = MentionHolds(
            settings, store, self.replies, self.queue, self.stop, worker_id=self.worker_id
        )
        self.handler = self._make_handler(answer, roles)
        self.claims = Claims(
            settings, store, self.queue, self.metrics, self.stop, worker_id=self.worker_id
        )
        self.reader = SyncReader(settings, transport, store, self.queue, self.metrics, self.stop)
        self.jobs = IndexJobs(
            settings,
            store,
            self.metrics,
            self.stop,
            past_answers_changed=self.past_answers_changed,
            republish=republish,
            reindex=reindex,
            reload=reload,
        )
        self.digest = DigestJob(
            settings,
            store.db,
            self.stop,
            worker_id=self.worker_id,
            link=digest_link or (lambda q: matrix_permalink(q.room_id, q.event_id)),
            room=digest_room,
        )
        self.dashboard = self._make_port(answer, index)
        self._http = http

    def _make_handler(self, answer: Answer, roles: RoomRoles) -> EventHandler:
        return EventHandler(
            self.settings,
            self.store,
            answer,
            self.executor,
            me=BotIdentity(self.transport.user_id),
            learner=self.learner,
            roles=roles,
            holds=self.holds,
            replies=self.replies,
        )

    def _make_port(self, answer: Answer, index: ServedIndex | None) -> DashboardPort:
        return DashboardPort(
            self.settings,
            self.store,
            self.metrics,
            ready=self.readiness,
            answer=answer,
            index=index,
            executor=self.executor,
            replies=self.replies,
            learner=self.learner,
            jobs=self.jobs,
        )

    @property
    def me(self) -> BotIdentity:
        return self.handler.me

    @property
    def http_port(self) -> int | None:
        """The HTTP side's bound port, once serving."""
        return self.links.port

    @property
    def replies_sent(self) -> int:
        return self.replies.sent

    # --- lifecycle -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self.stop.is_set():
            log.info("stop requested: finishing the event in hand, then closing")
            self.stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        http = self._http(self.dashboard) if self._http is not None else None
        if http is not None:
            self.links.port = await http.start()
        try:
            await self.reader.connect()
            self.handler.me = BotIdentity(self.transport.user_id, self.transport.display_name)
            await self.claims.release_dead_local()
            await self._run_tasks()
        finally:
            if http is not None:
                await http.close()
            await self.jobs.close()
            await self.transport.close()
            self.executor.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _run_tasks(self) -> None:
        """Run until a stop, or until the reader or the answer loop ends (raising its error)."""
        reader = asyncio.create_task(self.reader.read_loop(), name="sync-reader")
        answerer = asyncio.create_task(self._answer_loop(), name="answerer")
        background = [
            reader,
            asyncio.create_task(self.jobs.publish_loop(), name="publisher"),
            asyncio.create_task(self.jobs.reindex_loop(), name="reindex"),
            asyncio.create_task(self.jobs.watch_loop(), name="index-watch"),
            asyncio.create_task(self.digest.schedule_loop(), name="digest"),
            # Its first pass queues what was persisted before this start and not yet handled.
            asyncio.create_task(self.claims.sweep_loop(), name="claim-sweep"),
        ]
        stopper = asyncio.create_task(self.stop.wait(), name="stop")
        done, _ = await asyncio.wait(
            {reader, answerer, stopper}, return_when=asyncio.FIRST_COMPLETED
        )
        self.stop.set()
        # An in-flight long-poll is safe to drop: its token was not stored.
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await answerer  # it notices the stop between events
        self.holds.cancel_wakers()
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]

    def readiness(self) -> tuple[bool, str]:
        """Ready when /sync succeeded recently (the watchdog's window) and nothing is stopping."""
        if self.stop.is_set():
            return False, "stopping"
        since = self.metrics.seconds_since_sync()
        if since is None:
            return False, "no successful /sync yet"
        if since > sync_silence_limit(self.settings):
            return False, f"last successful /sync {since:.0f} s ago"
        return True, "syncing"

    # --- the answer loop -----------------------------------------------------------------------
    async def _answer_loop(self) -> None:
        while not self.stop.is_set():
            event = await self.queue.get(timeout=0.5)
            if event is None or not await self.claims.claim(event):
                continue
            started = time.monotonic()
            outcome = await self._handle_claimed(event)
            if outcome is None:  # stopped mid-send: give it back to the next start or worker
                await self.claims.give_back(event.event_id)
                return
            if outcome.kind is Kind.DEFERRED:  # unhandled on purpose: it comes back when due
                self.metrics.outcomes.labels(Kind.DEFERRED.value).inc()
                log.info(
                    "mention %s from %s waits for the rate limits: %s",
                    event.event_id,
                    event.sender,
                    outcome.code,
                    extra={"event_id": event.event_id, "outcome": outcome.code},
                )
                continue
            await self._record(event, outcome, started)

    async def _handle_claimed(self, event: RoomEvent) -> Outcome | None:
        """Handle an event while renewing its claim; one bad event must not stop the room."""
        renewer = asyncio.create_task(self.claims.keep(event.event_id), name="claim-renew")
        try:
            return await self.handler.handle(event)
        except FatalError:
            raise
        except MessageRejectedError as exc:
            log.error("the homeserver refused the reply to %s: %s", event.event_id, exc)
            return SEND_REJECTED
        except Exception as exc:  # it stays stored
            log.exception("handling %s in %s failed", event.event_id, event.room_id)
            self.metrics.errors.labels("handling").inc()
            return Outcome.error(type(exc).__name__)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _record(self, event: RoomEvent, outcome: Outcome, started: float) -> None:
        await asyncio.to_thread(
            self.store.mark_handled, event.event_id, outcome.code, self.worker_id
        )
        self.queue.release(event.event_id)
        elapsed = time.monotonic() - started
        self.metrics.answer_seconds.observe(elapsed)
        self.metrics.outcomes.labels(outcome.kind.value).inc()
        if outcome.kind is Kind.REPLIED:
            self.metrics.replies_out.inc()
        level = logging.WARNING if elapsed > self.settings.slow_handling_seconds else logging.INFO
        log.log(
            level,
            "event %s in %s from %s: %s (%.2f s)",
            event.event_id,
            event.room_id,
            event.sender,
            outcome.code,
            elapsed,
            extra={
                "room_id": event.room_id,
                "event_id": event.event_id,
                "sender": event.sender,
                "outcome": outcome.code,
                "seconds": round(elapsed, 3),
                "worker": self.worker_id,
            },
        )
