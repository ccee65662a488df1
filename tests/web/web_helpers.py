"""Shared by the dashboard tests: a web context on a real database (SQLite or PostgreSQL: tests
pass conftest's ``database_url``), signing in through the real login form, and stored questions
made the way the service makes them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot.chat.events import RoomEvent
from bot.metrics import Metrics
from bot.settings import load_settings
from bot.store.auth_store import AuthStore
from bot.store.database import Database
from bot.store.room_store import RoomStore
from bot.web.app import build_app
from bot.web.context import WebContext
from bot.web.passwords import hash_password

PASSWORD = "correct horse battery"
ROOM = "!keras:example.org"
OTHER_ROOM = "!tf:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def make_context(
    tmp_path: Path, database_url: str, *, settings: dict[str, Any] | None = None, **parts: Any
) -> WebContext:
    values: dict[str, Any] = {"data_dir": tmp_path, "login_max_failures": 3}
    values.update(settings or {})
    db = Database(database_url)
    db.create_schema()
    return WebContext(
        settings=load_settings(**values),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "test"),
        **parts,
    )


def add_user(ctx: WebContext, name: str = "maria", password: str = PASSWORD) -> None:
    assert AuthStore(ctx.db).add_user(name, hash_password(password)) == "created"


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


async def login(
    client: TestClient[Any, Any],
    name: str = "maria",
    password: str = PASSWORD,
    *,
    next_path: str | None = None,
) -> Any:
    """Fill in the real login form (with its double-submit token); returns the response."""
    page = await client.get("/login" + (f"?next={next_path}" if next_path else ""))
    form = {"csrf_token": csrf_in(await page.text()), "name": name, "password": password}
    if next_path:
        form["next"] = next_path
    return await client.post("/login", data=form, allow_redirects=False)


async def signed_in(client: TestClient[Any, Any], name: str = "maria") -> str:
    """Sign in and return the session's CSRF token (read from a dashboard page's form)."""
    response = await login(client, name)
    assert response.status == 303, await response.text()
    page = await client.get("/queue")
    assert page.status == 200
    return csrf_in(await page.text())


def serve(ctx: WebContext, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def go() -> None:
        async with TestClient(TestServer(build_app(ctx))) as client:
            await scenario(client)

    try:
        asyncio.run(go())
    finally:
        ctx.db.close()


def room_event(
    event_id: str,
    body: str,
    *,
    sender: str = ALICE,
    room: str = ROOM,
    ts: int = 1_700_000_000_000,
    rel_type: str | None = None,
    relates_to: str | None = None,
    in_reply_to: str | None = None,
    event_type: str = "m.room.message",
    msgtype: str | None = "m.text",
) -> RoomEvent:
    return RoomEvent(
        room_id=room,
        event_id=event_id,
        sender=sender,
        origin_ts=ts,
        event_type=event_type,
        msgtype=msgtype,
        body=body,
        rel_type=rel_type,
        relates_to=relates_to,
        in_reply_to=in_reply_to,
    )


SOURCE = {
    "doc_id": "keras-io:api/callbacks/early_stopping",
    "title": "EarlyStopping",
    "url": "https://keras.io/api/callbacks/early_stopping/",
    "section": "",
    "excerpt": "Stop training when a monitored metric has stopped improving.",
    "score": 0.8123,
    "kind": "api",
    "answered_by": None,
}


def add_question(
    store: RoomStore,
    event_id: str,
    text: str,
    *,
    sender: str = ALICE,
    room: str = ROOM,
    ts: int = 1_700_000_000_000,
    confidence: float | None = 0.7,
    status: str = "suggested",
    suggestion: str | None = "See [EarlyStopping](https://keras.io/api/callbacks/early_stopping/).",
) -> RoomEvent:
    """Persist the message and queue it as a question, as the service does."""
    event = room_event(event_id, text, sender=sender, room=room, ts=ts)
    store.persist_batch([event], None)
    store.save_question(
        event,
        text,
        mentioned=False,
        confidence=confidence,
        suggestion=suggestion,
        sources=[SOURCE] if suggestion else [],
        index_version="v-test",
        status=status,
    )
    return event
