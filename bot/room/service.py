"""The long-running room service: transport → store → bounded queue → answerer → transport.

Two tasks share one bounded queue. The *reader* long-polls ``/sync``, writes each batch's new
events and the next sync token in one transaction, then enqueues the new events (a full queue
makes it wait: backpressure instead of unbounded memory). The *answerer* handles one event at
a time: policy, retrieval in the single worker thread, then at most one reply per question,
claimed in the database before it is sent with a transaction id derived from the question's
event id. Events are marked handled only after that, so a crash anywhere re-handles them on
restart, and the claim plus the transaction id make sure the room still sees one reply.

Several workers (processes, one database) may run side by side: each syncs the rooms itself,
an event is fresh only for the worker whose insert stored it, and every worker claims an event
in the database (a lease, renewed while handling) before acting on it. A *sweeper* picks up
unhandled events nobody holds: those stored before a start, another worker's backlog, and,
once the lease has run out, the events of a worker that died mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web

from bot.answering.policy import (
    BotIdentity,
    Limit,
    ReplyLimiter,
    defer_rounds,
    ignore_reason,
    looks_like_question,
    mention_action,
    question_text,
)
from bot.answering.render import markdown_to_html
from bot.answering.reply import SuggestedReply
from bot.chat.events import PowerLevels, RoomEvent
from bot.chat.transport import ChatTransport, OutgoingReply
from bot.corpus.past_answers import matrix_permalink
from bot.errors import FatalError, MessageRejectedError, TransientError
from bot.metrics import Metrics
from bot.room.dashboard_port import DashboardBridge
from bot.room.learning import ACCEPT_KEYS, learn
from bot.settings import Settings
from bot.store.dashboard_store import LAST_BUILD_KEY, MODERATOR_REDACTION, DashboardStore
from bot.store.room_store import RoomStore
from bot.timeutil import utc_from_ms
from bot.web.app import build_app
from bot.web.context import WebContext
from bot.web.health import start_site

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = Callable[[str], SuggestedReply]

UNSURE_QUEUED = "I've also put your question in the maintainers' queue."
UNSURE_REPLY = (
    "I couldn't find a confident answer to this in the docs, so I've put your question in the "
    "maintainers' queue."
)
# The one line a mention gets when it cannot wait for the rate limits (policy.mention_action).
MENTION_NOTICES = {
    "too-many-waiting": (
        "You have a few questions waiting for me already, so I can't take this one as well; "
        "I've put it in the maintainers' queue."
    ),
    "room-busy": (
        "The room is too busy for me to answer everyone right now; I've put your question in "
        "the maintainers' queue."
    ),
    "waited-too-long": (
        "I couldn't get to your question in time; I've put it in the maintainers' queue."
    ),
}
# A deferred mention is woken this long after it is due, so its claim has surely expired.
_WAKE_MARGIN_SECONDS = 0.05


def txn_id_for(question_event_id: str) -> str:
    """Stable per question: a retried or repeated send is de-duplicated by the homeserver."""
    return "supportbot-" + hashlib.sha256(question_event_id.encode()).hexdigest()[:40]


def notice_txn_id_for(question_event_id: str) -> str:
    """Stable per question, apart from its reply's: a re-sent notice is de-duplicated too."""
    return "supportbot-notice-" + hashlib.sha256(question_event_id.encode()).hexdigest()[:40]


def dead_local_workers(holders: Iterable[str], me: str) -> list[str]:
    """Claim holders that were earlier processes on this host and are no longer running.

    The default worker id is ``<hostname>-<pid>``, new on every start: without this, a bot
    restarted after a SIGKILL would wait a whole lease for the event it had in hand. Only ids
    of that form with this host's name are judged; a pid that is alive (perhaps reused by
    some other program) is left alone, and its lease runs out as usual.
    """
    host = socket.gethostname()
    dead: list[str] = []
    for holder in holders:
        name, _, pid = holder.rpartition("-")
        if holder == me or name != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(holder)
        except (PermissionError, OverflowError, ValueError):
            continue  # a live process of another user, or not a pid at all
    return dead


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


def _replied_to(event: RoomEvent) -> list[str]:
    """The messages this one answers: its thread's root and the message it replies to."""
    thread = event.relates_to if event.rel_type == "m.thread" else None
    return [e for e in (thread, event.in_reply_to) if e]


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
        # The limits count every worker's replies: they are read from the database.
        self.limiter = ReplyLimiter(
            settings.user_cooldown_seconds, settings.room_replies_per_minute, store
        )
        self.worker_id = settings.resolved_worker_id
        self.lease_seconds = settings.claim_lease_seconds
        # Often enough that a dead worker's events wait little more than the lease.
        self.sweep_seconds = min(self.lease_seconds / 4, 10.0)
        self._expired_holders: dict[str, str] = {}  # event id -> the worker whose lease ran out
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
        self._wakers: set[asyncio.Task[None]] = set()  # timers of this worker's deferred mentions
        self.replies_sent = 0
        self.dashboard = DashboardStore(store.db)
        self.bridge = DashboardBridge(self)

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
            await self._release_dead_local_claims()
            reader = asyncio.create_task(self._read_loop(), name="sync-reader")
            answerer = asyncio.create_task(self._answer_loop(), name="answerer")
            publisher = asyncio.create_task(self._publish_loop(), name="publisher")
            scheduler = asyncio.create_task(self._reindex_loop(), name="reindex")
            watcher = asyncio.create_task(self._watch_loop(), name="index-watch")
            # Its first pass queues what was persisted before this start and not yet handled.
            sweeper = asyncio.create_task(self._sweep_loop(), name="claim-sweep")
            stopper = asyncio.create_task(self._stopping.wait(), name="stop")
            done, _ = await asyncio.wait(
                {reader, answerer, stopper}, return_when=asyncio.FIRST_COMPLETED
            )
            self._stopping.set()
            reader.cancel()  # an in-flight long-poll is safe to drop: its token was not stored
            for background in (reader, publisher, scheduler, watcher, sweeper):
                background.cancel()
            for background in (reader, publisher, scheduler, watcher, sweeper):
                with contextlib.suppress(asyncio.CancelledError):
                    await background
            await answerer  # it notices the stop between events
            for waker in list(self._wakers):  # their mentions wait in the database for the sweep
                waker.cancel()
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    raise task.exception()  # type: ignore[misc]
        finally:
            if runner is not None:
                await runner.cleanup()
            await self.bridge.close()
            await self.transport.close()
            self.executor.shutdown(wait=True, cancel_futures=True)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _start_http(self) -> web.AppRunner | None:
        if not self.settings.serve_http:
            return None
        runner = await start_site(
            build_app(self.web_context()), self.settings.web_host, self.settings.web_port
        )
        for site in runner.sites:
            server = getattr(site, "_server", None)
            for sock in getattr(server, "sockets", None) or ():
                self.http_port = int(sock.getsockname()[1])
        log.info(
            "serving the dashboard and /healthz /readyz /metrics on %s:%s",
            self.settings.web_host,
            self.http_port,
        )
        return runner

    def readiness(self) -> tuple[bool, str]:
        """Ready when /sync succeeded recently (the watchdog's window) and nothing is stopping."""
        if self._stopping.is_set():
            return False, "stopping"
        since = self.metrics.seconds_since_sync()
        if since is None:
            return False, "no successful /sync yet"
        window = self._sync_silence_limit()
        if since > window:
            return False, f"last successful /sync {since:.0f} s ago"
        return True, "syncing"

    # --- the dashboard's view of the service (bot/room/dashboard_port.py) ----------------------
    def web_context(self) -> WebContext:
        return self.bridge.web_context()

    async def post_from_dashboard(
        self, question_event_id: str, markdown: str, maintainer: str
    ) -> str:
        return await self.bridge.post(question_event_id, markdown, maintainer)

    async def _note_person_reply(self, event: RoomEvent) -> None:
        """A trusted answerer (a maintainer, or someone at the power-level threshold) replied in
        a question's thread or to the question itself: the question counts as answered by them.
        A "+1" or "same here" from anyone else answers nothing."""
        if not self._is_trusted(event.room_id, event.sender):
            return
        targets = _replied_to(event)
        if targets:
            await self._mark_answered(targets, event.sender, event)

    async def _note_acceptance(self, reaction: RoomEvent) -> None:
        """The asker's ✅/👍 on someone's reply to their question: answered by that someone."""
        if reaction.body.strip() not in ACCEPT_KEYS or not reaction.relates_to:
            return
        reply = await self._db(self.store.event, reaction.relates_to)
        if (
            reply is None
            or reply.event_type != "m.room.message"
            or reply.sender in (self.me.user_id, reaction.sender)
        ):
            return
        targets = _replied_to(reply)
        if targets:
            await self._mark_answered(targets, reply.sender, reaction, asker=reaction.sender)

    async def _mark_answered(
        self, targets: list[str], responder: str, event: RoomEvent, *, asker: str | None = None
    ) -> None:
        at = utc_from_ms(event.origin_ts) if event.origin_ts else None
        changed = await self._db(
            self.dashboard.note_reply_in_thread,
            targets,
            responder,
            at or datetime.now(UTC),
            asker=asker,
        )
        if changed:
            log.info("%s answered %d queued question(s) in the room", responder, changed)

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
    def _sync_silence_limit(self) -> float:
        """Watchdog: a long-poll that outlives its timeout by this much is a dead connection."""
        return self.settings.sync_timeout_ms / 1000 + self.settings.sync_watchdog_seconds

    async def _read_loop(self) -> None:
        token = await self._db(self.store.sync_token)
        backoff = self._backoff()
        silent_after = self._sync_silence_limit()
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

    # --- claims shared with other workers ------------------------------------------------------
    async def _release_dead_local_claims(self) -> None:
        try:
            holders = await self._db(self.store.claim_holders)
            dead = dead_local_workers(holders, self.worker_id)
            released = await self._db(self.store.release_claims, dead) if dead else 0
        except TransientError as exc:  # their leases run out anyway
            log.warning("could not look for claims of earlier processes: %s", exc)
            return
        if released:
            log.info(
                "released %d claims of earlier processes on this host (%s)",
                released,
                ", ".join(sorted(dead)),
                extra={"worker": self.worker_id},
            )

    async def _sweep_loop(self) -> None:
        """Queue unhandled events that nobody is working on, every ``sweep_seconds``.

        The first pass, at start, takes everything persisted before and not handled. Later
        passes take events stored more than a pass ago: another worker's backlog (so busy
        workers share it) and the events of a worker whose lease ran out (it died mid-way).
        Nothing is claimed here: the answerer claims each event right before handling it, so
        a queue full of events never holds other workers back.
        """
        first = True
        while not self._stopping.is_set():
            room = self.queue.maxsize - self.queue.qsize()
            if room > 0:
                try:
                    now = datetime.now(UTC)
                    found = await self._db(
                        self.store.claimable,
                        self.worker_id,
                        received_before=now
                        if first
                        else now - timedelta(seconds=self.sweep_seconds),
                        limit=room + len(self._queued),  # what is queued here comes back too
                        now=now,
                    )
                except TransientError as exc:
                    log.warning("looking for unhandled events failed (%s); trying again", exc)
                    found = []
                new = [(e, holder) for e, holder in found if e.event_id not in self._queued]
                if first and new:
                    log.info("re-handling %d events persisted before this start", len(new))
                for event, holder in new[:room]:
                    if holder is not None and holder != self.worker_id:
                        self._expired_holders[event.event_id] = holder
                    await self._enqueue(event)
            first = False
            if await self._sleep_or_stop(self.sweep_seconds):
                return

    async def _claim(self, event: RoomEvent) -> bool:
        """Claim the event for this worker; False when another worker holds or handled it."""
        previous = self._expired_holders.pop(event.event_id, None)
        try:
            if previous is None:  # queued here before the other worker's lease ran out
                previous = await self._db(self.store.expired_holder, event.event_id, self.worker_id)
            ours = await self._db(
                self.store.claim_event, event.event_id, self.worker_id, self.lease_seconds
            )
        except TransientError as exc:  # left unclaimed: the next sweep offers it again
            log.warning("claiming %s failed (%s); leaving it for now", event.event_id, exc)
            self._queued.discard(event.event_id)
            return False
        if not ours:
            self._queued.discard(event.event_id)  # a later sweep may offer it again
            self.metrics.claims_lost.inc()
            log.debug(
                "event %s is another worker's; skipping",
                event.event_id,
                extra={"event_id": event.event_id, "worker": self.worker_id},
            )
            return False
        if previous is not None:
            self.metrics.claims_taken_over.inc()
            log.warning(
                "took over %s from worker %s, whose lease ran out",
                event.event_id,
                previous,
                extra={"event_id": event.event_id, "worker": self.worker_id},
            )
        return True

    async def _keep_claim(self, event_id: str) -> None:
        """Renew the lease while handling (slow inference, send retries); runs until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                ours = await self._db(
                    self.store.claim_event, event_id, self.worker_id, self.lease_seconds
                )
            except Exception as exc:  # best effort: the next renewal may work, the lease is long
                log.warning("renewing the claim on %s failed: %s", event_id, exc)
                continue
            if not ours:
                # Only after this process stalled for longer than the lease. The reply claim
                # and its transaction id still keep the room at one reply.
                log.warning(
                    "another worker took over %s while this one was handling it",
                    event_id,
                    extra={"event_id": event_id, "worker": self.worker_id},
                )
                self.metrics.claims_lost.inc()
                return

    # --- answerer ------------------------------------------------------------------------------
    async def _answer_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                event = await asyncio.wait_for(self.queue.get(), timeout=0.5)
            except TimeoutError:
                continue
            if not await self._claim(event):
                continue
            started = time.monotonic()
            renewer = asyncio.create_task(self._keep_claim(event.event_id), name="claim-renew")
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
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            if outcome is None:  # stopped mid-send: give it back to the next start or worker
                with contextlib.suppress(TransientError):
                    await self._db(self.store.release_claim, event.event_id, self.worker_id)
                return
            if outcome.startswith("deferred:"):  # unhandled on purpose: it comes back when due
                self.metrics.outcomes.labels("deferred").inc()
                log.info(
                    "mention %s from %s waits for the rate limits: %s",
                    event.event_id,
                    event.sender,
                    outcome,
                    extra={"event_id": event.event_id, "outcome": outcome},
                )
                continue
            await self._db(self.store.mark_handled, event.event_id, outcome, self.worker_id)
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
                    "worker": self.worker_id,
                },
            )

    def _power(self, room_id: str) -> PowerLevels | None:
        # Read at each use: the transport follows m.room.power_levels changes in the sync.
        levels: dict[str, PowerLevels] = getattr(self.transport, "power_levels", {})
        return levels.get(room_id)

    def _is_trusted(self, room_id: str, user: str) -> bool:
        if user in self.maintainers:
            return True
        levels = self._power(room_id)
        return levels is not None and levels.of(user) >= self.settings.maintainer_power_level

    def _is_moderator(self, room_id: str, user: str) -> bool:
        """May redact other people's messages in the room (by power level, as the server
        decides; a configured maintainer without that level may not)."""
        levels = self._power(room_id)
        return levels is not None and levels.of(user) >= levels.redact

    def _learn_sync(self, event: RoomEvent) -> int:
        changes = learn(
            event,
            lookup=self.store.event,
            pair_for_question=self.store.pair_for_question,
            pairs_touching=self.store.pairs_touching,
            is_trusted=self._is_trusted,
            bot_user=self.me.user_id,
            bot_replied=self.store.bot_replied,
            permalink=self._permalink,
            is_moderator=self._is_moderator,
        )
        return self.store.apply_changes(changes) if changes else 0

    def _permalink(self, room_id: str, event_id: str) -> str:
        """Where a past answer's link points: matrix.to, or the local room's page here."""
        if getattr(self.transport, "local_room", None) is not None and self.http_port:
            from bot.chat.local_transport import local_room_url

            return f"{local_room_url(self.settings.web_host, self.http_port)}#{event_id}"
        return matrix_permalink(room_id, event_id)

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
        if event.event_type == "m.reaction" and event.sender != self.me.user_id:
            await self._note_acceptance(event)
        if event.event_type == "m.room.redaction" and self._is_moderator(
            event.room_id, event.sender
        ):
            # Recorded so the dashboard blanks the message: a redaction by anyone but the
            # message's sender counts only from a moderator.
            return MODERATOR_REDACTION
        reason = ignore_reason(event, self.me, self.ignore_users)
        if reason:
            return f"ignored:{reason}"
        await self._note_person_reply(event)
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
        if existing is None and mentioned and event.origin != "history":
            # The limits before the model: a mention they hold back without deferring it (the
            # asker is told why, or was told already) runs no model, so a flood of mentions
            # queues no CPU work. A deferred one (bounded per user and per room) still gets its
            # suggestion for the dashboard while it waits.
            held_back, outcome = await self._held_back(event, mentioned=True)
            if held_back:
                if outcome is not None and outcome.startswith("deferred:"):
                    await self._suggest(event, text, mentioned=True)
                elif await self._db(self.store.question, event.event_id) is None:
                    await self._db(
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
                return outcome
        reply = await self._suggest(event, text, mentioned=mentioned)
        if event.origin == "history":
            return "history"  # first join: old questions go to triage, never get a late reply
        if not (mentioned or self.settings.reply_to_unmentioned):
            return "triage"
        if not reply.would_reply and not mentioned:
            return "triage:low-confidence"
        body = reply.markdown if reply.would_reply else self._unsure_body(reply)
        return await self._reply(event, body, confident=reply.would_reply, mentioned=mentioned)

    async def _suggest(self, event: RoomEvent, text: str, *, mentioned: bool) -> SuggestedReply:
        """Run the model on the question and store it with the suggestion, for triage."""
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
        return reply

    def _unsure_body(self, reply: SuggestedReply) -> str:
        if self.settings.unsure_reply == "closest" and reply.sources:
            # compose_reply's unsure text already says so ("I'm not sure..."): keep it honest.
            return f"{reply.markdown}\n\n{UNSURE_QUEUED}"
        return UNSURE_REPLY

    async def _reply(
        self, event: RoomEvent, body: str, *, confident: bool, mentioned: bool = False
    ) -> str | None:
        existing = await self._db(self.store.reply, event.event_id)
        if existing is None:
            held_back, outcome = await self._held_back(event, mentioned=mentioned)
            if held_back:
                return outcome
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
        try:
            reply_id = await self._send(outgoing)
        except MessageRejectedError as exc:
            log.error("the homeserver refused the reply to %s: %s", event.event_id, exc)
            await self._db(self.store.mark_reply_rejected, event.event_id)
            return "error:send-rejected"
        if reply_id is None:
            return None
        await self._db(self.store.mark_reply_sent, event.event_id, reply_id)
        if confident:
            await self._db(self.dashboard.record_bot_answer, event.event_id)
        else:
            await self._db(self.store.set_question_status, event.event_id, "new")
        self.replies_sent += 1
        return "replied" if confident else "replied:unsure"

    async def _send(self, outgoing: OutgoingReply) -> str | None:
        """Send, retrying transient errors with backoff; None when a stop came first."""
        backoff = self._backoff()
        while True:
            try:
                return await self.transport.send_reply(outgoing)
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning(
                    "reply to %s failed (%s); retry in %.1f s", outgoing.reply_to, exc, delay
                )
                self.metrics.errors.labels("send").inc()
                if await self._sleep_or_stop(delay):
                    return None

    # --- mentions held back by the rate limits ---------------------------------------------------
    async def _held_back(self, event: RoomEvent, *, mentioned: bool) -> tuple[bool, str | None]:
        """(True, outcome) when the limits hold this reply back, (False, None) when it may go.

        A mention is a request: one the limits hold back waits for them, or is told why.
        """
        held = await self._db(self.store.held_outcome, event.event_id) if mentioned else None
        if held and held.startswith("notice:"):  # decided before a restart: keep to it
            return True, await self._send_notice(event, held)
        if held and held.startswith("deferred:") and await self._answered_meanwhile(event.event_id):
            return True, "answered-meanwhile"  # while it waited, a person answered it
        limit = await self._db(self.limiter.limit, event.room_id, event.sender)
        if limit is None:
            return False, None
        if not mentioned:
            return True, f"suppressed:{limit.reason}"
        return True, await self._hold_mention(event, limit, held)

    async def _answered_meanwhile(self, event_id: str) -> bool:
        question = await self._db(self.store.question, event_id)
        return question is not None and question.status not in ("new", "suggested")

    async def _hold_mention(self, event: RoomEvent, limit: Limit, held: str | None) -> str | None:
        """Defer a mention until ``limit`` passes, or tell the asker in one line why not.

        The deferral is stored on the event (see ``RoomStore.defer_event``): a restart keeps it,
        and whichever worker claims it when due answers it, once. The notice is rate-limited
        itself; one that may not go either leaves the question to the maintainers' queue.
        """
        rounds = defer_rounds(held)
        for_user, in_room = await self._db(self.store.waiting_mentions, event.room_id, event.sender)
        action = mention_action(
            rounds=rounds,
            waiting_for_user=for_user,
            waiting_in_room=in_room,
            max_per_user=self.settings.deferred_mentions_per_user,
            max_per_room=self.settings.room_replies_per_minute,
        )
        if action == "defer":
            outcome = f"deferred:{limit.reason}:{rounds + 1}"
            deferred = await self._db(
                self.store.defer_event, event.event_id, self.worker_id, limit.until, outcome
            )
            self._queued.discard(event.event_id)
            if deferred:
                self._wake(event, limit.until)
            return outcome  # not marked handled either way: it is the deferral's, or another's
        told = await self._db(self.limiter.notice_limit, event.room_id, event.sender)
        if told:
            return f"suppressed:{limit.reason}:{told}"
        return await self._send_notice(event, f"notice:{action}")

    async def _send_notice(self, event: RoomEvent, outcome: str) -> str | None:
        """The one line saying why a mention is not answered; recorded before it is sent."""
        await self._db(self.store.hold_outcome, event.event_id, self.worker_id, outcome)
        text = MENTION_NOTICES.get(outcome.split(":", 1)[1], MENTION_NOTICES["room-busy"])
        outgoing = OutgoingReply(
            room_id=event.room_id,
            reply_to=event.event_id,
            thread_root=event.thread_root,
            body=text,
            formatted_body=markdown_to_html(text),
            txn_id=notice_txn_id_for(event.event_id),
            mention=event.sender,
        )
        try:
            sent = await self._send(outgoing)
        except MessageRejectedError as exc:
            log.error("the homeserver refused the notice to %s: %s", event.event_id, exc)
            return "error:notice-rejected"
        return None if sent is None else outcome

    def _wake(self, event: RoomEvent, due: datetime) -> None:
        """Queue a deferred mention here when it is due; the sweepers are the fallback."""
        delay = max(0.0, (due - datetime.now(UTC)).total_seconds()) + _WAKE_MARGIN_SECONDS

        async def wake() -> None:
            if not await self._sleep_or_stop(delay):
                await self._enqueue(event)

        task = asyncio.create_task(wake(), name="deferred-mention")
        self._wakers.add(task)
        task.add_done_callback(self._wakers.discard)
