"""``supportbot run``: its start-up wiring (settings checks, database, transport, answerer,
RoomService) and ``--prepare`` (migrate, build a first index)."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC
from typing import Any

from bot.cli.loaders import load_retriever, settings_from_args
from bot.logs import redact
from bot.settings import Settings

log = logging.getLogger("supportbot")


def _prepare(settings: Settings, db: Any) -> None:
    """``run --prepare``: migrate, and build a first index when none is published."""
    from bot.retrieval.index import current_version
    from index_builder.build import build_index
    from index_builder.progress import ProgressLines

    before, head = db.upgrade()
    if before != head:
        log.info("database schema migrated from %s to %s", before or "empty", head)
    if current_version(settings.index_root) is None:
        log.info("no index published in %s yet: building one", settings.index_root)
        # A first build takes minutes; in a container's or the journal's log it shows progress.
        report = build_index(settings, progress=ProgressLines())
        log.info(
            "index %s: %d documents, %d chunks in %.1f s",
            report.version,
            report.documents,
            report.chunks,
            report.seconds,
        )


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import datetime

    from bot.chat.local_transport import LocalTransport, local_room_url
    from bot.chat.transport import ChatTransport
    from bot.errors import ConfigError
    from bot.gitter_client import MatrixTransport
    from bot.room.answerer import LiveAnswerer
    from bot.room.service import RoomService
    from bot.settings import check_local_room_bind, check_room_settings, read_access_token
    from bot.store import Database
    from bot.store.local_room import LocalRoom, Retention
    from bot.store.room_store import RoomStore

    settings = settings_from_args(args)
    local = settings.uses_local_room  # no homeserver configured: serve the embedded room
    check_local_room_bind(settings)
    if local and not settings.serve_http:
        raise ConfigError(
            "the local room is a web page: set SUPPORTBOT_SERVE_HTTP=true "
            "(or SUPPORTBOT_MATRIX_USER_ID and friends for a Matrix room)"
        )
    if not local:
        check_room_settings(settings)
    if args.verbose == 0:
        logging.getLogger("bot").setLevel(logging.INFO)
        logging.getLogger("supportbot").setLevel(logging.INFO)
    db = Database(settings.resolved_database_url)
    if args.prepare:
        _prepare(settings, db)
    db.create_schema()
    room: LocalRoom | None = None
    token: str | None = None
    if local:
        try:
            retention = Retention(settings.local_room_keep_events, settings.local_room_keep_days)
            room = LocalRoom(
                db, settings.local_room_id, settings.local_bot_user, retention=retention
            )
        except ValueError as exc:
            raise ConfigError(f"SUPPORTBOT_LOCAL_ROOM_ID / _LOCAL_BOT_USER: {exc}") from None
    else:
        token = read_access_token(settings)
        redact([token])  # it never reaches a log line, whatever a library prints
    answerer = LiveAnswerer(settings, load_retriever(settings))  # model loaded before joining

    transport: ChatTransport
    if room is not None:
        transport = LocalTransport(
            room,
            sync_timeout_ms=settings.sync_timeout_ms,
            history_depth=settings.history_depth,
            timeline_limit=settings.sync_timeline_limit,
        )
    else:
        assert settings.matrix_user_id is not None and token is not None
        transport = MatrixTransport(
            settings.matrix_homeserver,
            settings.matrix_user_id,
            token,
            settings.matrix_rooms,
            sync_timeout_ms=settings.sync_timeout_ms,
            timeline_limit=settings.sync_timeline_limit,
            history_depth=settings.history_depth,
        )
    service = RoomService(
        settings,
        transport,
        RoomStore(db),
        answerer,
        republish=answerer.republish,
        reindex=answerer.scheduled_rebuild,
        reload=answerer.reload,
    )

    def index_age() -> float:
        built = answerer.retriever.index.manifest.get("built_at")
        if not built:
            return float("nan")
        return (datetime.now(UTC) - datetime.fromisoformat(built)).total_seconds()

    service.metrics.watch_index(
        index_age,
        lambda: len(answerer.retriever.index.docs),
        lambda: len(answerer.retriever.index.chunks),
    )

    async def serve() -> None:
        running = asyncio.create_task(service.run())
        if local:
            # The port is known only once the server has bound (SUPPORTBOT_WEB_PORT=0 picks one).
            while service.http_port is None and not running.done():
                await asyncio.wait({running}, timeout=0.05)
            if service.http_port is not None:
                url = local_room_url(settings.web_host, service.http_port)
                print(f"Local room: {url}", flush=True)
        await running

    try:
        asyncio.run(serve())
    finally:
        db.close()
    log.info("stopped after %d replies", service.replies_sent)
    return 0
