"""Claims on events shared by several workers on one database: claim, keep, sweep, release."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from bot.chat.events import RoomEvent
from bot.errors import TransientError
from bot.metrics import Metrics
from bot.room.timing import StopSignal
from bot.room.work_queue import WorkQueue
from bot.settings import Settings
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)


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


class Claims:
    """Owns this worker's claims on events in the shared database. An event is claimed (a
    lease) right before it is handled and the lease is renewed while handling; a sweeper
    queues unhandled events nobody holds (those stored before a start, another worker's
    backlog, a dead worker's once its lease ran out); at start the claims of this host's dead
    earlier processes are released."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        queue: WorkQueue,
        metrics: Metrics,
        stop: StopSignal,
        *,
        worker_id: str,
    ) -> None:
        self.store = store
        self.queue = queue
        self.metrics = metrics
        self.stop = stop
        self.worker_id = worker_id
        self.lease_seconds = settings.claim_lease_seconds
        # Often enough that a dead worker's events wait little more than the lease.
        self.sweep_seconds = min(self.lease_seconds / 4, 10.0)
        self._expired_holders: dict[str, str] = {}  # event id -> the worker whose lease ran out

    async def release_dead_local(self) -> None:
        try:
            holders = await asyncio.to_thread(self.store.claim_holders)
            dead = dead_local_workers(holders, self.worker_id)
            released = await asyncio.to_thread(self.store.release_claims, dead) if dead else 0
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

    async def sweep_loop(self) -> None:
        """Queue unhandled events that nobody is working on, every ``sweep_seconds``.

        The first pass, at start, takes everything persisted before and not handled. Later
        passes take events stored more than a pass ago: another worker's backlog (so busy
        workers share it) and the events of a worker whose lease ran out (it died mid-way).
        Nothing is claimed here: the answer loop claims each event right before handling it,
        so a queue full of events never holds other workers back.
        """
        first = True
        while not self.stop.is_set():
            if self.queue.free() > 0:
                await self._sweep(first=first)
            first = False
            if await self.stop.sleep(self.sweep_seconds):
                return

    async def _sweep(self, *, first: bool) -> None:
        room = self.queue.free()
        try:
            now = datetime.now(UTC)
            found = await asyncio.to_thread(
                self.store.claimable,
                self.worker_id,
                received_before=now if first else now - timedelta(seconds=self.sweep_seconds),
                limit=room + len(self.queue),  # what is queued here comes back too
                now=now,
            )
        except TransientError as exc:
            log.warning("looking for unhandled events failed (%s); trying again", exc)
            found = []
        new = [(e, holder) for e, holder in found if e.event_id not in self.queue]
        if first and new:
            log.info("re-handling %d events persisted before this start", len(new))
        for event, holder in new[:room]:
            if holder is not None and holder != self.worker_id:
                self._expired_holders[event.event_id] = holder
            await self.queue.put(event)

    async def claim(self, event: RoomEvent) -> bool:
        """Claim the event for this worker; False when another worker holds or handled it."""
        previous = self._expired_holders.pop(event.event_id, None)
        try:
            if previous is None:  # queued here before the other worker's lease ran out
                previous = await asyncio.to_thread(
                    self.store.expired_holder, event.event_id, self.worker_id
                )
            ours = await asyncio.to_thread(
                self.store.claim_event, event.event_id, self.worker_id, self.lease_seconds
            )
        except TransientError as exc:  # left unclaimed: the next sweep offers it again
            log.warning("claiming %s failed (%s); leaving it for now", event.event_id, exc)
            self.queue.release(event.event_id)
            return False
        if not ours:
            self.queue.release(event.event_id)  # a later sweep may offer it again
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

    async def keep(self, event_id: str) -> None:
        """Renew the lease while handling (slow inference, send retries); runs until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                ours = await asyncio.to_thread(
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

    async def give_back(self, event_id: str) -> None:
        """Stopped mid-way: the event goes to the next start or another worker."""
        with contextlib.suppress(TransientError):
            await asyncio.to_thread(self.store.release_claim, event_id, self.worker_id)
