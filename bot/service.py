"""The long-running room service: transport → store → bounded queue → answerer → transport.

Two tasks share one bounded queue. The *reader* long-polls ``/sync``, writes each batch's new
events and the next sync token in one transaction, then enqueues the new events (a full queue
makes it wait: backpressure instead of unbounded memory). The *answerer* handles one event at
a time: policy, retrieval in the single worker thread, then at most one reply per question,
claimed in the database before it is sent with a transaction id derived from the question's
event id. Events are marked handled only after that, so a crash anywhere re-handles them on
restart, and the claim plus the transaction id make sure the room still sees one reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from bot.answering.policy import (
    BotIdentity,
    ReplyLimiter,
    ignore_reason,
    looks_like_question,
    question_text,
)
from bot.answering.render import markdown_to_html
from bot.answering.reply import SuggestedReply
from bot.chat import ChatTransport, OutgoingReply, RoomEvent
from bot.errors import FatalError, MessageRejectedError, TransientError
from bot.metrics import Metrics
from bot.mining import learn
from bot.settings import Settings
from bot.store.room_store import RoomStore
from bot.web.health import make_app, start_site

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = Callable[[str], SuggestedReply]

LAST_BUILD_KEY = "index.last_build"  # JSON: when, trigger, ok, version or error, seconds

UNSURE_REPLY = (
    "I couldn't find a confident answer to this in the docs, so I've put your question in the "
    "maintainers' queue."
)


def txn_id_for(question_event_id: str) -> str:
    """Stable per question: a retried or repeated send is de-duplicated by the homeserver."""
    return "supportbot-" + hashlib.sha256(question_event_id.encode()).hexdigest()[:40]


class Backoff:
    """Capped exponential backoff with full jitter (half to all of the capped delay)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        # The exponent stops growing at the cap: a day-long outage must not overflow a float.
        capped = min(self.maximum, self.initial * (2.0 ** min(self.failures, 60)))
        self.failures += 1
        return capped * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class RoomService:
    def __init__(
        self,
        settings: Settings,
        transport: ChatTransport,
        store: RoomStore,
        answer: Answer,
        *,
        executor: ThreadPoolExecutor | None = None,
        republish: Callable[[], str | None] | None = None,
        reindex: Callable[[], str | None] | None = None,
        reload: Callable[[], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.store = store
        self.answer = answer
        self.republish = republish
        self.reindex = reindex  # the scheduled full re-index (cron in settings)
        self.reload = reload  # pick up an index published by `supportbot index build` outside
        self.executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer")
        self.limiter = ReplyLimiter(
            settings.user_cooldown_seconds, settings.room_replies_per_minute
        )
        self.me = BotIdentity(transport.user_id)
        self.ignore_users = frozenset(settings.ignore_users)
        self.maintainers = frozenset(settings.maintainers)
        # Set when learning changed the past answers; the re-publisher waits on it.
        self.past_answers_changed = asyncio.Event()
        self.queue: asyncio.Queue[RoomEvent] = asyncio.Queue(maxsize=settings.queue_size)
        self.metrics = Metrics()
        self.metrics.watch_queue(self.queue.qsize)
        self.http_port: int | None = None  # the bound port, once serving
        self._stopping = asyncio.Event()
        self._queued: set[str] = set()
        self.replies_sent = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stop requested: finishing the event in hand, then closing")
            self._stopping.set()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        runner = await self._start_http()
        try:
            await self._connect()
            self.me = BotIdentity(
                self.transport.user_id, getattr(self.transport, "display_name", None)
            )
            pending = await self._db(self.store.unhandled)
            if pending:
                log.info("re-handling %d events persisted before the last stop", len(pending))
            reader = asyncio.create_task(self._read_loop(), name="sync-reader")
            answerer = asyncio.create_task(self._answer_loop(), name="answerer")
            publisher = asyncio.create_task(self._publish_loop(), name="publisher")
            scheduler = asyncio.create_task(self._reindex_loop(), name="reindex")
            watcher = asyncio.create_task(self._watch_loop(), name="index-watch")
            for event in pending:  # persisted before a crash or stop, not yet handled
                await self._enqueue(event)
            stopper = asyncio.create_task(self._stopping.wait(), name="stop")
            done, _ = await asyncio.wait(
                {reader, answerer, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            self._stopping.set()
            reader.cancel()  # an in-flight long-poll is safe to drop: its token was not stored
            for background in (reader, publisher, scheduler, watcher):
                background.cancel()
            for background in (reader, publisher, scheduler, watcher):
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await answerer  # it notices the stop between events
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            if runner is not None:
                await runner.cleanup()
            await self.transport.close()
            self.executor.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _start_http(self) -> web.AppRunner | None:
        if not self.settings.serve_http:
            return None
        runner = await start_site(
            make_app(self.metrics, self.readiness), self.settings.web_host, self.settings.web_port
        )
        for site in runner.sites:
            server = getattr(site, "_server", None)
            for sock in getattr(server, "sockets", None) or ():
                self.http_port = int(sock.getsockname()[1])
        log.info(
            "serving /healthz /readyz /metrics on %s:%s", self.settings.web_host, self.http_port
        )
        return runner

    def readiness(self) -> tuple[bool, str]:
        """Ready when /sync succeeded recently (the watchdog's window) and nothing is stopping."""
        if self._stopping.is_set():
            return False, "stopping"
        since = self.metrics.seconds_since_sync()
        if since is None:
            return False, "no successful /sync yet"
        window = self.settings.sync_timeout_ms / 1000 + 30.0
        if since > window:
            return False, f"last successful /sync {since:.0f} s ago"
        return True, "syncing"

    async def _connect(self) -> None:
        backoff = self._backoff()
        while True:
            try:
                await self.transport.connect()
                return
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning("connect failed (%s); retrying in %.1f s", exc, delay)
                if await self._sleep_or_stop(delay):
                    raise FatalError("stopped before the homeserver could be reached") from exc

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.backoff_initial_seconds, self.settings.backoff_max_seconds)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return self._stopping.is_set()

    async def _enqueue(self, event: RoomEvent) -> None:
        if event.event_id in self._queued:
            return
        self._queued.add(event.event_id)
        await self.queue.put(event)

    # --- reader --------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        token = await self._db(self.store.sync_token)
        backoff = self._backoff()
        # Watchdog: a long-poll that outlives its timeout by this much is a dead connection.
        silent_after = self.settings.sync_timeout_ms / 1000 + 30.0
        while not self._stopping.is_set():
            try:
                batch = await asyncio.wait_for(self.transport.sync(token), timeout=silent_after)
            except TimeoutError:
                log.warning("sync silent for %.0f s (watchdog); reconnecting", silent_after)
                self.metrics.errors.labels("sync-watchdog").inc()
                await self._sleep_or_stop(backoff.next_delay())
                continue
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning("sync failed (%s); retry %d in %.1f s", exc, backoff.failures, delay)
                self.metrics.errors.labels("sync").inc()
                await self._sleep_or_stop(delay)
                continue
            if backoff.failures:
                log.info("sync recovered after %d failed attempts", backoff.failures)
            backoff.reset()
            fresh = await self._db(self.store.persist_batch, batch.events, batch.next_token)
            self.metrics.synced()
            for event in fresh:
                self.metrics.events_in.labels(event.event_type).inc()
            if token is None:
                log.info("first sync stored %d history events; listening", len(fresh))
            token = batch.next_token
            for event in fresh:
                await self._enqueue(event)

    # --- quick re-publish of learnt past answers ----------------------------------------------
    async def _publish_loop(self) -> None:
        if self.republish is None:
            return
        while not self._stopping.is_set():
            await self.past_answers_changed.wait()
            # Debounce: one rebuild for a burst of answers; the nightly build catches the rest.
            if await self._sleep_or_stop(self.settings.past_answers_publish_seconds):
                return
            self.past_answers_changed.clear()
            try:
                version = await asyncio.to_thread(self.republish)
            except Exception:  # the old index keeps serving
                log.exception("re-publishing the index with new past answers failed")
                continue
            if version:
                log.info("past answers searchable in index %s", version)

    # --- scheduled re-index and external publishes -------------------------------------------
    async def _reindex_loop(self) -> None:
        from croniter import croniter

        if self.reindex is None or self.settings.reindex_schedule == "off":
            return
        schedule = croniter(self.settings.reindex_schedule, datetime.now(UTC))
        while not self._stopping.is_set():
            due = schedule.get_next(datetime)
            wait = max(0.0, (due - datetime.now(UTC)).total_seconds())
            log.info("next scheduled re-index at %s", due.isoformat())
            if await self._sleep_or_stop(wait):
                return
            await self._run_build("scheduled", self.reindex)

    async def _run_build(self, why: str, build: Callable[[], str | None]) -> None:
        """Run a build off the loop; the old index keeps serving whatever happens."""
        started = time.monotonic()
        record: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "trigger": why}
        try:
            version = await asyncio.to_thread(build)
        except Exception as exc:
            log.exception("%s re-index failed; still serving the previous index", why)
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        else:
            record.update(ok=True, version=version, published=version is not None)
            log.info(
                "%s re-index done in %.1f s: %s",
                why,
                time.monotonic() - started,
                f"serving {version}" if version else "nothing changed",
            )
        record["seconds"] = round(time.monotonic() - started, 3)
        self.metrics.build_seconds.labels(why, "ok" if record["ok"] else "failed").observe(
            record["seconds"]
        )
        if not record["ok"]:
            self.metrics.errors.labels("index-build").inc()
        await self._db(self.store.set_state, LAST_BUILD_KEY, json.dumps(record))

    async def _watch_loop(self) -> None:
        if self.reload is None or self.settings.index_watch_seconds <= 0:
            return
        while not await self._sleep_or_stop(self.settings.index_watch_seconds):
            try:
                version = await asyncio.to_thread(self.reload)
            except Exception:  # a half-visible or broken publish: keep serving, look again later
                log.exception("loading the newly published index failed; keeping the current one")
                continue
            if version:
                log.info("picked up index %s published outside the bot", version)

    # --- answerer ------------------------------------------------------------------------------
    async def _answer_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                event = await asyncio.wait_for(self.queue.get(), timeout=0.5)
            except TimeoutError:
                continue
            started = time.monotonic()
            try:
                outcome = await self._handle(event)
            except FatalError:
                raise
            except MessageRejectedError as exc:
                log.error("the homeserver refused the reply to %s: %s", event.event_id, exc)
                outcome = "error:send-rejected"
            except Exception as exc:  # one bad event must not stop the room; it stays stored
                log.exception("handling %s in %s failed", event.event_id, event.room_id)
                outcome = f"error:{type(exc).__name__}"
                self.metrics.errors.labels("handling").inc()
            if outcome is None:  # stopped mid-send: leave it unhandled for the next start
                return
            await self._db(self.store.mark_handled, event.event_id, outcome)
            self._queued.discard(event.event_id)
            elapsed = time.monotonic() - started
            self.metrics.answer_seconds.observe(elapsed)
            self.metrics.outcomes.labels(outcome.split(":", 1)[0]).inc()
            if outcome.startswith("replied"):
                self.metrics.replies_out.inc()
            level = (
                logging.WARNING if elapsed > self.settings.slow_handling_seconds else logging.INFO
            )
            log.log(
                level,
                "event %s in %s from %s: %s (%.2f s)",
                event.event_id,
                event.room_id,
                event.sender,
                outcome,
                elapsed,
                extra={
                    "room_id": event.room_id,
                    "event_id": event.event_id,
                    "sender": event.sender,
                    "outcome": outcome,
                    "seconds": round(elapsed, 3),
                },
            )

    def _is_trusted(self, room_id: str, user: str) -> bool:
        if user in self.maintainers:
            return True
        levels = getattr(self.transport, "power_levels", {}).get(room_id, {})
        return int(levels.get(user, 0)) >= self.settings.maintainer_power_level

    def _learn_sync(self, event: RoomEvent) -> int:
        changes = learn(
            event,
            lookup=self.store.event,
            pair_for_question=self.store.pair_for_question,
            pairs_touching=self.store.pairs_touching,
            is_trusted=self._is_trusted,
            bot_user=self.me.user_id,
            bot_replied=self.store.bot_replied,
        )
        return self.store.apply_changes(changes) if changes else 0

    async def _learn(self, event: RoomEvent) -> None:
        if not self.settings.learn_from_room:
            return
        try:
            changed = await self._db(self._learn_sync, event)
        except Exception:  # learning is best effort; answering goes on
            log.exception("learning from %s failed", event.event_id)
            return
        if changed:
            log.info("past answers updated from %s (%d changes)", event.event_id, changed)
            self.past_answers_changed.set()

    async def _handle(self, event: RoomEvent) -> str | None:
        await self._learn(event)
        reason = ignore_reason(event, self.me, self.ignore_users)
        if reason:
            return f"ignored:{reason}"
        existing = await self._db(self.store.reply, event.event_id)
        if existing is not None and existing.state == "sent":
            return "already-replied"  # re-handled after a restart: keep its triage status
        mentioned = self.me.mentioned_in(event)
        text = question_text(event, self.me)
        quoted = await self._db(self.store.event, event.in_reply_to) if event.in_reply_to else None
        if (
            quoted is not None
            and quoted.sender == self.me.user_id
            and not looks_like_question(text)
        ):
            # "thanks!" in reply to the bot: clients mention the replied-to sender; not a question.
            return "feedback"
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
            return "not-a-question"
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.executor, self.answer, text)
        await self._db(
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
        if event.origin == "history":
            return "history"  # first join: old questions go to triage, never get a late reply
        if not (mentioned or self.settings.reply_to_unmentioned):
            return "triage"
        if not reply.would_reply and not mentioned:
            return "triage:low-confidence"
        body = reply.markdown if reply.would_reply else UNSURE_REPLY
        return await self._reply(event, body, confident=reply.would_reply)

    async def _reply(self, event: RoomEvent, body: str, *, confident: bool) -> str | None:
        existing = await self._db(self.store.reply, event.event_id)
        if existing is None:
            limited = self.limiter.check(event.room_id, event.sender)
            if limited:
                return f"suppressed:{limited}"
        claim = await self._db(
            self.store.claim_reply,
            question_event_id=event.event_id,
            room_id=event.room_id,
            txn_id=txn_id_for(event.event_id),
            body=body,
            formatted_body=markdown_to_html(body),
            thread_root=event.thread_root,
        )
        if claim.state == "sent":
            return "already-replied"
        outgoing = OutgoingReply(
            room_id=claim.room_id,
            reply_to=event.event_id,
            thread_root=claim.thread_root,
            body=claim.body,
            formatted_body=claim.formatted_body,
            txn_id=claim.txn_id,
            mention=event.sender,
        )
        backoff = self._backoff()
        while True:
            try:
                reply_id = await self.transport.send_reply(outgoing)
                break
            except MessageRejectedError as exc:
                log.error("the homeserver refused the reply to %s: %s", event.event_id, exc)
                await self._db(self.store.mark_reply_rejected, event.event_id)
                return "error:send-rejected"
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning("reply to %s failed (%s); retry in %.1f s", event.event_id, exc, delay)
                self.metrics.errors.labels("send").inc()
                if await self._sleep_or_stop(delay):
                    return None
        await self._db(self.store.mark_reply_sent, event.event_id, reply_id)
        await self._db(
            self.store.set_question_status,
            event.event_id,
            "answered_bot" if confident else "new",
        )
        self.limiter.record(event.room_id, event.sender)
        self.replies_sent += 1
        return "replied" if confident else "replied:unsure"
