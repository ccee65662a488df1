"""``supportbot run``: its start-up wiring (settings checks, database, transport, answerer,
RoomService) and ``--prepare`` (migrate, build a first index)."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC
from typing import TYPE_CHECKING

from bot.cli.loaders import load_retriever, settings_from_args
from bot.logs import redact
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.chat.transport import ChatTransport
    from bot.gitter_client import MatrixTransport
    from bot.room.answerer import LiveAnswerer
    from bot.room.service import RoomService
    from bot.store.database import Database
    from bot.store.local_room import LocalRoom

log = logging.getLogger("supportbot")


def _prepare(settings: Settings, db: Database) -> None:
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
    """Check the settings, open the database (``--prepare``: migrate and build first), load
    the model, connect the room and serve until stopped."""
    import asyncio

    from bot.room.answerer import LiveAnswerer
    from bot.store.database import Database

    settings = settings_from_args(args)
    local = settings.uses_local_room  # no homeserver configured: serve the embedded room
    _check_run_settings(settings, local=local)
    if args.verbose == 0:
        logging.getLogger("bot").setLevel(logging.INFO)
        logging.getLogger("supportbot").setLevel(logging.INFO)
    db = Database(settings.resolved_database_url)
    if args.prepare:
        _prepare(settings, db)
    db.create_schema()
    # A bad room id or token file fails here, before the model takes its time to load.
    room = _local_room(settings, db) if local else None
    token = None if local else redacted_access_token(settings)
    answerer = LiveAnswerer(settings, load_retriever(settings))  # model loaded before joining
    service = _room_service(settings, _transport(settings, room, token), db, answerer, room)
    _watch_index(service, answerer)
    try:
        asyncio.run(_serve(service, settings, local=local))
    finally:
        db.close()
    log.info("stopped after %d replies", service.replies_sent)
    return 0


def _check_run_settings(settings: Settings, *, local: bool) -> None:
    """Refuse, before anything starts, settings that cannot serve the room."""
    from bot.errors import ConfigError
    from bot.settings import check_local_room_bind, check_room_settings

    check_local_room_bind(settings)
    if local and not settings.serve_http:
        raise ConfigError(
            "the local room is a web page: set SUPPORTBOT_SERVE_HTTP=true "
            "(or SUPPORTBOT_MATRIX_USER_ID and friends for a Matrix room)"
        )
    if not local:
        check_room_settings(settings)


def _local_room(settings: Settings, db: Database) -> LocalRoom:
    """The embedded room's store, kept to the configured retention."""
    from bot.errors import ConfigError
    from bot.store.local_room import LocalRoom, Retention

    try:
        retention = Retention(settings.local_room_keep_events, settings.local_room_keep_days)
        return LocalRoom(db, settings.local_room_id, settings.local_bot_user, retention=retention)
    except ValueError as exc:
        raise ConfigError(f"SUPPORTBOT_LOCAL_ROOM_ID / _LOCAL_BOT_USER: {exc}") from None


def redacted_access_token(settings: Settings) -> str:
    """The Matrix access token, registered for redaction before any log line can show it."""
    from bot.settings import read_access_token

    token = read_access_token(settings)
    redact([token])  # it never reaches a log line, whatever a library prints
    return token


def _transport(settings: Settings, room: LocalRoom | None, token: str | None) -> ChatTransport:
    """The local room's transport when there is one, the Matrix one otherwise."""
    from bot.chat.local_transport import LocalTransport

    if room is not None:
        return LocalTransport(
            room,
            sync_timeout_ms=settings.sync_timeout_ms,
            history_depth=settings.history_depth,
            timeline_limit=settings.sync_timeline_limit,
        )
    assert token is not None
    return matrix_transport(settings, token)


def matrix_transport(settings: Settings, token: str) -> MatrixTransport:
    """The Matrix transport the settings describe (checked by ``check_room_settings``)."""
    from bot.gitter_client import MatrixTransport

    assert settings.matrix_user_id is not None
    return MatrixTransport(
        settings.matrix_homeserver,
        settings.matrix_user_id,
        token,
        settings.matrix_rooms,
        sync_timeout_ms=settings.sync_timeout_ms,
        timeline_limit=settings.sync_timeline_limit,
        history_depth=settings.history_depth,
    )


def _room_service(
    settings: Settings,
    transport: ChatTransport,
    db: Database,
    answerer: LiveAnswerer,
    room: LocalRoom | None,
) -> RoomService:
    """The room worker, with the answerer's index jobs as its republish/reindex/reload, and
    its HTTP side (probes, dashboard, the local room's page) built on its dashboard port."""
    from functools import partial

    from bot.chat.local_transport import local_room_url
    from bot.gitter_client import MatrixTransport
    from bot.room.service import RoomService
    from bot.store.room_store import RoomStore
    from bot.web.app import web_server_for
    from bot.web.formatting import question_url

    if room is not None and settings.maintainers_room:
        log.warning(
            "SUPPORTBOT_MAINTAINERS_ROOM is a Matrix room; the local room's digest is on the "
            "dashboard's Digests page"
        )
    return RoomService(
        settings,
        transport,
        RoomStore(db),
        answerer,
        republish=answerer.republish,
        reindex=answerer.scheduled_rebuild,
        reload=answerer.reload,
        index=answerer,
        http=partial(web_server_for, local_room=room) if settings.serve_http else None,
        room_page=partial(local_room_url, settings.web_host) if room is not None else None,
        digest_room=transport if isinstance(transport, MatrixTransport) else None,
        # In the local setup the digest is a dashboard page: its questions link to theirs.
        digest_link=(lambda q: question_url(q.event_id)) if room is not None else None,
    )


def _watch_index(service: RoomService, answerer: LiveAnswerer) -> None:
    """/metrics reports the live index's age and size, whichever version is loaded now."""
    from datetime import datetime

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


async def _serve(service: RoomService, settings: Settings, *, local: bool) -> None:
    """Run the service; for the local room, print its URL once the server has bound."""
    import asyncio

    from bot.chat.local_transport import local_room_url

    running = asyncio.create_task(service.run())
    if local:
        # The port is known only once the server has bound (SUPPORTBOT_WEB_PORT=0 picks one).
        while service.http_port is None and not running.done():
            await asyncio.wait({running}, timeout=0.05)
        if service.http_port is not None:
            url = local_room_url(settings.web_host, service.http_port)
            print(f"Local room: {url}", flush=True)
    await running
