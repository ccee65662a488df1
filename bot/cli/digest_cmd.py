"""``supportbot digest``: the maintainers' week as Markdown, printed, or posted with ``--post``
(issue 13, item 3). ``supportbot run`` posts it on its schedule (``bot/room/digest_job.py``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bot.cli.loaders import settings_from_args
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.gitter_client import MatrixTransport
    from bot.room.digest_job import Link
    from bot.store.database import Database

POST_TRIES = 3  # someone waits at the terminal: a few tries, then the error


def _link(settings: Settings) -> Link:
    """Questions link to their Matrix message, or in the local setup to their dashboard page."""
    from bot.corpus.past_answers import matrix_permalink
    from bot.web.formatting import question_url

    if settings.uses_local_room:
        return lambda q: question_url(q.event_id)
    return lambda q: matrix_permalink(q.room_id, q.event_id)


def cmd_digest(args: argparse.Namespace) -> int:
    """Print the digest of the last ``--days`` days against the ``--days`` before them; with
    ``--post`` post it too (the maintainers' room and the dashboard)."""
    from datetime import UTC, datetime

    from bot.room.digest_job import compose_digest
    from bot.store.database import Database

    settings = settings_from_args(args)
    days = args.days or settings.digest_days
    db = Database(settings.resolved_database_url)
    try:
        db.create_schema()
        if args.post:
            import asyncio

            return asyncio.run(_post(settings, db, days=days, limit=args.limit))
        text = compose_digest(
            db, settings, now=datetime.now(UTC), days=days, limit=args.limit, link=_link(settings)
        )
    finally:
        db.close()
    print(text, end="")
    return 0


async def _post(settings: Settings, db: Database, *, days: int, limit: int) -> int:
    from datetime import UTC, datetime

    from bot.room.digest_job import DigestJob
    from bot.room.timing import StopSignal

    room = await _maintainers_room(settings)
    try:
        period = "manual:" + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        job = DigestJob(
            settings,
            db,
            StopSignal(),
            worker_id=settings.resolved_worker_id,
            link=_link(settings),
            room=room,
        )
        digest = await job.post(period, tries=POST_TRIES, days=days, limit=limit)
    finally:
        if room is not None:
            await room.close()
    assert digest is not None and digest.text is not None  # a new period is always ours
    print(digest.text, end="")
    if digest.state == "failed":
        print(f"error: the maintainers' room refused the digest: {digest.error}", file=sys.stderr)
        return 1
    where = f"to {digest.room_id}" if digest.room_id else "on the dashboard's Digests page"
    print(f"posted {where}", file=sys.stderr)
    return 0


async def _maintainers_room(settings: Settings) -> MatrixTransport | None:
    """The Matrix transport, connected, when a maintainers' room is set for a Matrix setup."""
    if settings.uses_local_room or not settings.maintainers_room:
        return None
    from bot.cli.run import matrix_transport, redacted_access_token
    from bot.settings import check_room_settings

    check_room_settings(settings)
    transport = matrix_transport(settings, redacted_access_token(settings))
    await transport.connect()
    return transport
