"""Index jobs beside the room: re-publish learnt past answers, re-index on a schedule, pick up
an index published outside the bot, and record each build for the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.metrics import Metrics
from bot.room.timing import StopSignal
from bot.settings import Settings
from bot.store.dashboard_store import LAST_BUILD_KEY
from bot.store.room_store import RoomStore

log = logging.getLogger(__name__)

# Runs a build or a reload (blocking); the new index's version, or None when nothing changed.
Build = Callable[[], str | None]


class IndexJobs:
    """Owns the index jobs the worker runs beside the room: the quick re-publish when learnt
    past answers change (``past_answers_changed``), the scheduled full re-index
    (``reindex``, cron in the settings), loading an index published by ``supportbot index
    build`` outside the bot (``reload``), a rebuild started from the dashboard (one at a time),
    and the record of each build. Builds run in a thread; the old index keeps serving whatever
    happens."""

    def __init__(
        self,
        settings: Settings,
        store: RoomStore,
        metrics: Metrics,
        stop: StopSignal,
        *,
        past_answers_changed: asyncio.Event,
        republish: Build | None = None,
        reindex: Build | None = None,
        reload: Build | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.stop = stop
        self.past_answers_changed = past_answers_changed
        self.republish = republish
        self.reindex = reindex
        self.reload = reload
        self.dashboard_build: asyncio.Task[None] | None = None

    async def publish_loop(self) -> None:
        if self.republish is None:
            return
        while not self.stop.is_set():
            await self.past_answers_changed.wait()
            # Debounce: one rebuild for a burst of answers; the nightly build catches the rest.
            if await self.stop.sleep(self.settings.past_answers_publish_seconds):
                return
            self.past_answers_changed.clear()
            try:
                version = await asyncio.to_thread(self.republish)
            except Exception:  # the old index keeps serving
                log.exception("re-publishing the index with new past answers failed")
                continue
            if version:
                log.info("past answers searchable in index %s", version)

    async def reindex_loop(self) -> None:
        from croniter import croniter

        if self.reindex is None or self.settings.reindex_schedule == "off":
            return
        schedule = croniter(self.settings.reindex_schedule, datetime.now(UTC))
        while not self.stop.is_set():
            due = schedule.get_next(datetime)
            wait = max(0.0, (due - datetime.now(UTC)).total_seconds())
            log.info("next scheduled re-index at %s", due.isoformat())
            if await self.stop.sleep(wait):
                return
            await self.run_build("scheduled", self.reindex)

    async def watch_loop(self) -> None:
        if self.reload is None or self.settings.index_watch_seconds <= 0:
            return
        while not await self.stop.sleep(self.settings.index_watch_seconds):
            try:
                version = await asyncio.to_thread(self.reload)
            except Exception:  # a half-visible or broken publish: keep serving, look again later
                log.exception("loading the newly published index failed; keeping the current one")
                continue
            if version:
                log.info("picked up index %s published outside the bot", version)

    async def start_rebuild(self) -> None:
        """Start a full re-index in the background (from the dashboard); one at a time."""
        if self.reindex is None:
            return
        if self.dashboard_build is not None and not self.dashboard_build.done():
            log.info("a rebuild started from the dashboard is still running")
            return
        self.dashboard_build = asyncio.create_task(
            self.run_build("dashboard", self.reindex), name="dashboard-rebuild"
        )

    async def close(self) -> None:
        """Stop a rebuild started from the dashboard (the old index keeps serving)."""
        if self.dashboard_build is not None and not self.dashboard_build.done():
            self.dashboard_build.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.dashboard_build

    async def run_build(self, why: str, build: Build) -> None:
        """Run a build off the loop and record how it went; the old index keeps serving."""
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
        await asyncio.to_thread(self.store.set_state, LAST_BUILD_KEY, json.dumps(record))
