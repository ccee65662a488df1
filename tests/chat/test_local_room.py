"""The local room: its timeline in SQLite, the transport over it, its web page, and the bot
answering a question posted there end to end (real index, real model, no homeserver)."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.chat.events import PowerLevels, parse_event
from bot.chat.local_input import MAX_BODY_BYTES, LocalRoomInputError
from bot.chat.local_transport import LocalTransport, local_room_url
from bot.chat.transport import ChatTransport, OutgoingReply
from bot.errors import MessageRejectedError, SchemaOutdatedError
from bot.metrics import Metrics
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.local_room import LocalRoom, Retention, event_size
from bot.store.models import LocalRoomEventRow
from bot.store.room_store import SYNC_TOKEN_KEY, RoomStore
from bot.web.context import CTX_KEY, WebContext
from bot.web.room import (
    CSRF_COOKIE,
    CSRF_REFUSED,
    NAME_COOKIE,
    POST_LIMITER_KEY,
    add_room_routes,
    add_static,
)

ROOM = "!local:test.localhost"
BOT = "@supportbot:test.localhost"
ALICE = "@alice:test.localhost"
BOB = "@bob:test.localhost"
XSS = "<img src=x onerror=alert(1)>"


# --- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture
def db(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A migrated database: SQLite and PostgreSQL for the room itself, SQLite for the page."""
    monkeypatch.chdir(tmp_path)  # no stray .env or supportbot.toml
    database = Database(database_url)
    database.create_schema()
    yield database
    database.close()


# The page's tests exercise HTTP, not the database: one backend is enough.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def room(db: Database) -> LocalRoom:
    return LocalRoom(db, ROOM, BOT)


def count_rows(db: Database) -> int:
    with db.session() as s:
        return s.query(LocalRoomEventRow).count()


def content_of(room: LocalRoom, event_id: str) -> dict[str, Any]:
    raw = room.event(event_id)
    assert raw is not None
    return dict(raw["content"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


async def async_wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


# --- LocalRoom ---------------------------------------------------------------------------------
def test_post_stores_a_matrix_shaped_event(room: LocalRoom) -> None:
    event_id = room.post(ALICE, "  how do I save a model?\r\n", mentions=[BOT, BOT])
    assert re.fullmatch(r"\$[A-Za-z0-9_-]{20,}", event_id)
    raw = room.event(event_id)
    assert raw is not None
    assert raw["type"] == "m.room.message" and raw["room_id"] == ROOM
    assert raw["content"] == {
        "msgtype": "m.text",
        "body": "how do I save a model?",
        "m.mentions": {"user_ids": [BOT]},
    }
    parsed = parse_event(ROOM, raw)
    assert parsed is not None
    assert (parsed.event_id, parsed.sender, parsed.body) == (
        event_id,
        ALICE,
        raw["content"]["body"],
    )
    assert parsed.mentions == (BOT,) and parsed.msgtype == "m.text"
    assert parsed.origin_ts > 0 and parsed.rel_type is None


def test_txn_id_makes_a_post_idempotent_per_sender(room: LocalRoom, db: Database) -> None:
    first = room.post(ALICE, "hello", txn_id="t1")
    assert room.post(ALICE, "hello again", txn_id="t1") == first  # a retried send
    assert content_of(room, first)["body"] == "hello"
    other = room.post(BOB, "hello", txn_id="t1")  # scoped per sender, as Matrix does per device
    assert other != first
    assert room.post(ALICE, "no txn") != room.post(ALICE, "no txn")
    assert count_rows(db) == 4
    with pytest.raises(LocalRoomInputError, match="transaction id"):
        room.post(ALICE, "x", txn_id="no spaces allowed")


def test_concurrent_posts_with_one_txn_id_store_one_event(room: LocalRoom, db: Database) -> None:
    results: list[str] = []

    def post() -> None:
        results.append(room.post(ALICE, "once", txn_id="same"))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 6
    assert count_rows(db) == 1


def test_thread_replies_point_at_the_root_and_the_latest_thread_event(room: LocalRoom) -> None:
    root = room.post(ALICE, "how do I freeze layers?", mentions=[BOT])
    first = room.post(BOB, "set trainable=False", thread_root=root)
    assert content_of(room, first)["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }
    room.post(ALICE, "unrelated top-level message")
    second = room.post(ALICE, "thanks!", thread_root=root)
    relates = content_of(room, second)["m.relates_to"]
    assert relates["event_id"] == root and relates["m.in_reply_to"] == {"event_id": first}
    # Threads do not nest: replying "in the thread of" a reply joins the root's thread.
    third = room.post(BOB, "welcome", thread_root=second)
    assert content_of(room, third)["m.relates_to"]["event_id"] == root
    explicit = room.post(BOB, "see above", thread_root=root, in_reply_to=first)
    relates = content_of(room, explicit)["m.relates_to"]
    assert relates["is_falling_back"] is False and relates["m.in_reply_to"]["event_id"] == first
    plain_reply = room.post(BOB, "quoting you", in_reply_to=root)
    assert content_of(room, plain_reply)["m.relates_to"] == {"m.in_reply_to": {"event_id": root}}
    parsed = parse_event(ROOM, room.event(second) or {})
    assert parsed is not None and parsed.thread_root == root and parsed.in_reply_to == first


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "enter a name"),
        ("   ", "enter a name"),
        ("a" * 33, "1 to 32 characters"),
        ("alice smith", "only letters"),
        ("<b>x</b>", "only letters"),
        ("émile", "only letters"),
        ("SupportBot", "the bot's"),
    ],
)
def test_bad_names_are_refused_clearly(room: LocalRoom, name: str, message: str) -> None:
    with pytest.raises(LocalRoomInputError, match=message):
        room.user_id_for(name)


def test_user_ids_from_names(room: LocalRoom) -> None:
    assert room.user_id_for(" Alice.B_2-x ") == "@alice.b_2-x:test.localhost"
    assert room.user_id_for("a" * 32) == "@" + "a" * 32 + ":test.localhost"


def test_bad_posts_are_refused_and_store_nothing(room: LocalRoom, db: Database) -> None:
    with pytest.raises(LocalRoomInputError, match="empty"):
        room.post(ALICE, " \n\t ")
    with pytest.raises(LocalRoomInputError, match="too long"):
        room.post(ALICE, "x" * (MAX_BODY_BYTES + 1))
    with pytest.raises(LocalRoomInputError, match="too long"):
        room.post(ALICE, "é" * (MAX_BODY_BYTES // 2 + 1))  # bytes count, not characters
    with pytest.raises(LocalRoomInputError, match="not a user"):
        room.post("@alice:elsewhere.org", "hi")
    with pytest.raises(LocalRoomInputError, match="no message"):
        room.post(ALICE, "hi", thread_root="$missing")
    with pytest.raises(LocalRoomInputError, match="no message"):
        room.post(ALICE, "hi", in_reply_to="$missing")
    assert count_rows(db) == 0
    assert isinstance(LocalRoomInputError("x"), ValueError)
    room.post(ALICE, "x" * MAX_BODY_BYTES)  # the limit itself is fine
    assert count_rows(db) == 1


def test_reactions(room: LocalRoom) -> None:
    target = room.post(ALICE, "question?")
    reaction = room.post_reaction(ALICE, target, "✅")
    assert room.post_reaction(ALICE, target, "✅") == reaction  # once per sender and key
    assert room.post_reaction(BOB, target, "✅") != reaction
    parsed = parse_event(ROOM, room.event(reaction) or {})
    assert parsed is not None
    assert (parsed.event_type, parsed.rel_type, parsed.relates_to, parsed.body) == (
        "m.reaction",
        "m.annotation",
        target,
        "✅",
    )
    with pytest.raises(LocalRoomInputError, match="no message"):
        room.post_reaction(ALICE, reaction, "👍")  # a reaction is not a message
    with pytest.raises(LocalRoomInputError, match="reaction"):
        room.post_reaction(ALICE, target, "")


def test_reading_the_timeline(room: LocalRoom, db: Database) -> None:
    assert room.head() == 0 and room.recent(5) == [] and room.events_after(0) == []
    ids = [room.post(ALICE, f"message {n}") for n in range(5)]
    other = LocalRoom(db, "!other:test.localhost", "@supportbot:test.localhost")
    other.post("@carol:test.localhost", "elsewhere")
    seqs = [seq for seq, _ in room.events_after(0)]
    assert [raw["event_id"] for _, raw in room.events_after(0)] == ids
    assert seqs == sorted(seqs) and room.head() == seqs[-1]
    assert [raw["event_id"] for _, raw in room.events_after(seqs[1], limit=2)] == ids[2:4]
    assert [raw["event_id"] for _, raw in room.recent(2)] == ids[3:]
    assert room.recent(0) == []
    assert room.event("$missing") is None


def test_wait_wakes_on_a_post_and_times_out_without_one(room: LocalRoom, db: Database) -> None:
    async def scenario() -> None:
        assert await room.wait(0, 0.05) is False
        waiter = asyncio.create_task(room.wait(0, 60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await asyncio.to_thread(room.post, ALICE, "wake up")
        assert await waiter is True
        assert await room.wait(0, 0) is True  # already newer: no waiting at all

        # Another process (here: another LocalRoom on its own engine) posts: the DB poll sees it.
        head = room.head()
        elsewhere_db = Database(db.engine.url.render_as_string(hide_password=False))
        try:
            elsewhere = LocalRoom(elsewhere_db, ROOM, BOT)
            waiter = asyncio.create_task(room.wait(head, 60))
            await asyncio.sleep(0.05)
            await asyncio.to_thread(elsewhere.post, BOB, "from another process")
            assert await waiter is True
        finally:
            elsewhere_db.close()

    asyncio.run(scenario())


def test_connect_needs_the_migrated_table(tmp_path: Path, room: LocalRoom) -> None:
    asyncio.run(LocalTransport(room).connect())  # migrated: fine
    bare = Database(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        transport = LocalTransport(LocalRoom(bare, ROOM, BOT))
        with pytest.raises(SchemaOutdatedError, match="supportbot db upgrade"):
            asyncio.run(transport.connect())
    finally:
        bare.close()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080/room"),
        ("0.0.0.0", "http://127.0.0.1:8080/room"),
        ("::", "http://[::1]:8080/room"),
        ("localhost", "http://localhost:8080/room"),
    ],
)
def test_local_room_url(host: str, url: str) -> None:
    assert local_room_url(host, 8080) == url


def test_room_and_bot_ids_are_validated(db: Database) -> None:
    with pytest.raises(ValueError, match="room id"):
        LocalRoom(db, "local", BOT)
    with pytest.raises(ValueError, match="bot user"):
        LocalRoom(db, ROOM, "supportbot")


# --- LocalTransport ----------------------------------------------------------------------------
def reply_for(
    question: str, txn: str = "supportbot-txn1", root: str | None = None
) -> OutgoingReply:
    return OutgoingReply(
        room_id=ROOM,
        reply_to=question,
        thread_root=root or question,
        body="See [Saving models](https://keras.io/guides/serialization_and_saving/).",
        formatted_body='<p>See <a href="https://keras.io/guides/serialization_and_saving/">'
        "Saving models</a>.</p>",
        txn_id=txn,
        mention=ALICE,
    )


def test_transport_identity(room: LocalRoom) -> None:
    transport = LocalTransport(room, sync_timeout_ms=10)
    as_protocol: ChatTransport = transport  # the service's interface, checked by mypy
    assert as_protocol.user_id == BOT
    assert transport.local_room is room
    assert transport.power_levels == {ROOM: PowerLevels(users={BOT: 100})}
    assert transport.display_name is None


def test_sync_history_then_live_with_long_poll(room: LocalRoom) -> None:
    old = [room.post(ALICE, f"old {n}") for n in range(4)]
    transport = LocalTransport(room, sync_timeout_ms=60_000, history_depth=2, timeline_limit=2)

    async def scenario() -> None:
        await transport.connect()
        first = await transport.sync(None)
        assert [e.event_id for e in first.events] == old[2:]  # history_depth most recent
        assert {e.origin for e in first.events} == {"history"}
        assert first.next_token == str(room.head())

        # Long-poll: nothing yet, so sync waits until someone posts.
        pending = asyncio.create_task(transport.sync(first.next_token))
        await asyncio.sleep(0.05)
        assert not pending.done()
        new = await asyncio.to_thread(room.post, BOB, "a new question?", mentions=[BOT])
        batch = await pending
        assert [(e.event_id, e.origin) for e in batch.events] == [(new, "live")]
        assert batch.events[0].mentions == (BOT,)
        assert int(batch.next_token) == room.head()

        # More than timeline_limit new events: delivered over several syncs, none skipped.
        more = [await asyncio.to_thread(room.post, BOB, f"burst {n}") for n in range(5)]
        seen: list[str] = []
        token = batch.next_token
        while len(seen) < len(more):
            step = await transport.sync(token)
            assert len(step.events) <= 2
            seen += [e.event_id for e in step.events]
            token = step.next_token
        assert seen == more
        await transport.close()

    asyncio.run(scenario())


def test_a_syncing_reader_misses_nothing_from_concurrent_posters(room: LocalRoom) -> None:
    transport = LocalTransport(room, sync_timeout_ms=200, timeline_limit=7)
    posted: list[str] = []

    def poster(n: int) -> None:
        for i in range(15):
            posted.append(room.post(f"@user{n}:test.localhost", f"message {n}.{i}"))

    async def scenario() -> list[str]:
        token = (await transport.sync(None)).next_token
        writers = asyncio.gather(*(asyncio.to_thread(poster, n) for n in range(4)))
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while len(seen) < 60 and time.monotonic() < deadline:
            batch = await transport.sync(token)
            seen += [e.event_id for e in batch.events]
            token = batch.next_token
        await writers
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == len(set(seen)) == 60
    assert set(seen) == set(posted)


def test_sync_times_out_empty_and_keeps_its_token(room: LocalRoom) -> None:
    room.post(ALICE, "hello")
    transport = LocalTransport(room, sync_timeout_ms=50)

    async def scenario() -> None:
        token = (await transport.sync(None)).next_token
        batch = await transport.sync(token)
        assert batch.events == () and batch.next_token == token

    asyncio.run(scenario())


@pytest.mark.parametrize("token", ["s72594_4483_1934", "-3", "999999"])
def test_a_foreign_or_stale_token_starts_over_from_history(room: LocalRoom, token: str) -> None:
    posted = room.post(ALICE, "before")
    transport = LocalTransport(room, sync_timeout_ms=50)
    batch = asyncio.run(transport.sync(token))
    assert [(e.event_id, e.origin) for e in batch.events] == [(posted, "history")]
    assert batch.next_token == str(room.head())


def test_send_reply_is_a_threaded_notice_and_idempotent(room: LocalRoom, db: Database) -> None:
    question = room.post(ALICE, "how do I save a model?", mentions=[BOT])
    transport = LocalTransport(room, sync_timeout_ms=50)

    async def scenario() -> None:
        token = (await transport.sync(None)).next_token
        reply_id = await transport.send_reply(reply_for(question))
        assert await transport.send_reply(reply_for(question)) == reply_id  # retried send
        raw = room.event(reply_id)
        assert raw is not None and raw["sender"] == BOT
        assert raw["content"] == {
            "msgtype": "m.notice",
            "body": reply_for(question).body,
            "format": "org.matrix.custom.html",
            "formatted_body": reply_for(question).formatted_body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": question,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": question},
            },
            "m.mentions": {"user_ids": [ALICE]},
        }
        batch = await transport.sync(token)
        [event] = batch.events
        assert (event.event_id, event.sender, event.msgtype) == (reply_id, BOT, "m.notice")
        assert (event.thread_root, event.in_reply_to) == (question, question)
        assert event.formatted_body == reply_for(question).formatted_body

        wrong_room = replace(reply_for(question), room_id="!x:y")
        with pytest.raises(MessageRejectedError):
            await transport.send_reply(wrong_room)
        empty = replace(reply_for(question, txn="t2"), body=" ")
        with pytest.raises(MessageRejectedError, match="empty"):
            await transport.send_reply(empty)

    asyncio.run(scenario())
    assert count_rows(db) == 2


# --- the web page ------------------------------------------------------------------------------
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Messages(HTMLParser):
    """For each element with data-event-id: its classes and its ancestors' (classes, id)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, set[str], str | None]] = []
        self.found: dict[str, tuple[set[str], list[tuple[set[str], str | None]]]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        event_id = values.get("data-event-id")
        if event_id:
            self.found[event_id] = (classes, [(c, e) for _, c, e in self.stack])
        if tag not in VOID:
            self.stack.append((tag, classes, event_id))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def messages_in(html: str) -> dict[str, tuple[set[str], list[tuple[set[str], str | None]]]]:
    parser = Messages()
    parser.feed(html)
    return parser.found


def in_thread_of(html: str, reply: str, root: str) -> bool:
    _, ancestors = messages_in(html)[reply]
    ids = [e for _, e in ancestors]
    return root in ids and any("thread" in c for c, _ in ancestors[ids.index(root) :])


def make_app(
    db: Database, room: LocalRoom | None, tmp_path: Path, **settings: Any
) -> web.Application:
    app = web.Application()
    app[CTX_KEY] = WebContext(
        settings=load_settings(data_dir=tmp_path, **settings),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "ok"),
        local_room=room,
    )
    add_room_routes(app)
    return app


Scenario = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def with_client(app: web.Application, scenario: Scenario) -> None:
    async def go() -> None:
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(go())


async def csrf_token(client: TestClient[web.Request, web.Application]) -> str:
    page = await client.get("/room")
    assert page.status == 200
    match = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert match
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/room"))[CSRF_COOKIE]
    assert cookie.value == match.group(1)
    return match.group(1)


@sqlite_only
def test_room_page_sets_a_strict_csrf_cookie_and_is_testable(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        page = await client.get("/room")
        assert page.status == 200
        html = await page.text()
        set_cookie = page.headers["Set-Cookie"]
        assert f"{CSRF_COOKIE}=" in set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        assert "Path=/room" in set_cookie
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert 'id="post-form"' in html and 'name="body"' in html and 'name="name"' in html
        assert 'name="mention_bot" value="on" checked' in html
        assert "No messages yet" in html
        assert '<script src="/static/room.js"' in html
        for asset in ("/static/room.js", "/static/room.css"):
            assert (await client.get(asset)).status == 200
        # The token is kept while the cookie is valid.
        token = await csrf_token(client)
        again = await client.get("/room")
        assert f'value="{token}"' in await again.text()
        assert CSRF_COOKIE not in again.headers.get("Set-Cookie", "")

    with_client(make_app(db, room, tmp_path), scenario)


@sqlite_only
def test_post_redirects_back_and_the_message_shows(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)
        form = {"csrf": token, "name": "Alice", "body": "how do I save?", "mention_bot": "on"}
        posted = await client.post("/room/messages", data=form, allow_redirects=False)
        assert posted.status == 303
        [(_, raw)] = room.events_after(0)
        assert posted.headers["Location"] == f"/room#{raw['event_id']}"
        assert raw["sender"] == ALICE
        assert raw["content"]["m.mentions"] == {"user_ids": [BOT]}
        assert client.session.cookie_jar.filter_cookies(client.make_url("/room"))[
            NAME_COOKIE
        ].value == ("Alice")

        page = await (await client.get("/room")).text()
        assert raw["event_id"] in messages_in(page)
        assert 'value="Alice"' in page  # the name is remembered
        unmentioned = {"csrf": token, "name": "bob", "body": "just chatting"}
        assert (await client.post("/room/messages", data=unmentioned)).status == 200
        _, last = room.events_after(0)[-1]
        assert last["content"]["m.mentions"] == {"user_ids": []}

    with_client(make_app(db, room, tmp_path), scenario)


@sqlite_only
def test_cross_site_posts_are_refused(db: Database, room: LocalRoom, tmp_path: Path) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        form = {"name": "mallory", "body": "spam"}
        no_cookie = await client.post("/room/messages", data={**form, "csrf": "x" * 43})
        assert no_cookie.status == 403
        assert await no_cookie.text() == CSRF_REFUSED
        token = await csrf_token(client)
        wrong = token[:-1] + ("B" if token.endswith("A") else "A")  # one character off
        for bad in ({**form, "csrf": wrong}, form):
            refused = await client.post("/room/messages", data=bad)
            assert refused.status == 403
            assert "room_csrf" in await refused.text()
        as_json = await client.post(
            "/room/messages", data=form, headers={"Accept": "application/json"}
        )
        assert as_json.status == 403 and (await as_json.json())["error"] == CSRF_REFUSED
        assert count_rows(db) == 0

    with_client(make_app(db, room, tmp_path), scenario)


@sqlite_only
def test_user_text_is_escaped_and_bot_markdown_is_rendered(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    question = room.post(ALICE, XSS)
    reply = room.send(
        BOT,
        {
            "msgtype": "m.notice",
            "body": "See **[Saving](https://keras.io/guides/serialization_and_saving/)** "
            "<script>alert(2)</script>",
            "m.relates_to": {"rel_type": "m.thread", "event_id": question},
        },
    )
    # Someone else's Markdown stays text: only the bot's notices are rendered.
    room.post(BOB, "**not bold** [link](https://example.org)", thread_root=question)

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        html = await (await client.get("/room")).text()
        assert "<img" not in html and "<script>alert" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
        assert (
            '<strong><a href="https://keras.io/guides/serialization_and_saving/">Saving</a>'
            "</strong>" in html
        )
        assert "**not bold** [link](https://example.org)" in html
        found = messages_in(html)
        assert "bot" in found[reply][0] and "bot" not in found[question][0]
        assert in_thread_of(html, reply, question)

        events = await (await client.get("/room/events?since=0")).json()
        by_id = {e["event_id"]: e for e in events}
        assert by_id[question]["body"] == XSS and by_id[question]["html"] is None
        assert (
            '<a href="https://keras.io/guides/serialization_and_saving/">' in (by_id[reply]["html"])
        )
        assert "<script>" not in by_id[reply]["html"]
        assert by_id[reply]["bot"] is True and by_id[reply]["thread_root"] == question

    with_client(make_app(db, room, tmp_path), scenario)


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("alice", "   ", "the message is empty"),
        ("alice", "x" * (MAX_BODY_BYTES + 1), "too long"),
        ("", "hello", "enter a name"),
        ("<script>", "hello", "only letters"),
        ("a" * 40, "hello", "1 to 32 characters"),
        ("supportbot", "I am the bot now", "the bot's"),
    ],
)
@sqlite_only
def test_bad_input_gives_400_with_a_clear_message_and_stores_nothing(
    db: Database, room: LocalRoom, tmp_path: Path, name: str, body: str, message: str
) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)
        form = {"csrf": token, "name": name, "body": body, "mention_bot": "on"}
        page = await client.post("/room/messages", data=form)
        assert page.status == 400
        html = await page.text()
        assert message in html.replace("&#39;", "'")
        assert 'id="post-error"' in html and 'id="post-form"' in html
        as_json = await client.post(
            "/room/messages", data=form, headers={"Accept": "application/json"}
        )
        assert as_json.status == 400
        assert message in (await as_json.json())["error"]
        assert count_rows(db) == 0

    with_client(make_app(db, room, tmp_path), scenario)


@sqlite_only
def test_thread_replies_txn_ids_and_json_posts(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    root = room.post(ALICE, "how do I freeze layers?")

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)
        replying = await (await client.get("/room", params={"thread": root})).text()
        assert f'name="thread_root" value="{root}"' in replying
        assert 'id="thread-banner" class="thread-banner">' in replying  # shown, not hidden
        form = {"csrf": token, "name": "bob", "body": "trainable=False", "thread_root": root}
        form["txn_id"] = "abc123"
        first = await client.post(
            "/room/messages", data=form, headers={"Accept": "application/json"}
        )
        assert first.status == 201
        reply = (await first.json())["event_id"]
        again = await client.post("/room/messages", data=form, allow_redirects=False)
        assert again.headers["Location"] == f"/room#{reply}"  # the same transaction: no repost
        assert count_rows(db) == 2
        html = await (await client.get("/room")).text()
        assert in_thread_of(html, reply, root)
        events = await (await client.get(f"/room/events?since={room.head() - 1}")).json()
        assert [(e["event_id"], e["thread_root"]) for e in events] == [(reply, root)]
        assert (await (await client.get(f"/room/events?since={room.head()}")).json()) == []
        for bad in ("abc", "-1", "1e3"):
            refused = await client.get(f"/room/events?since={bad}")
            assert refused.status == 400
            assert "since" in (await refused.json())["error"]

    with_client(make_app(db, room, tmp_path), scenario)


@sqlite_only
def test_no_local_room_means_no_room_page(db: Database, tmp_path: Path) -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        assert (await client.get("/room")).status == 404
        assert (await client.get("/room/events")).status == 404

    with_client(make_app(db, None, tmp_path), scenario)


@sqlite_only
def test_static_route_is_registered_once(db: Database, room: LocalRoom, tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_static("/static/", Path(__file__).parent, name="static")  # e.g. the dashboard
    add_room_routes(app)
    add_static(app)
    assert len([r for r in app.router.resources() if r.canonical == "/static"]) == 1
    plain = web.Application()
    add_static(plain)
    add_static(plain)
    assert "static" in plain.router.named_resources()


# --- end to end: the bot answers in the local room ---------------------------------------------
def test_a_question_posted_in_the_local_room_gets_a_threaded_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index_dir: Path, encoder: Any
) -> None:
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever
    from bot.room.answerer import LiveAnswerer
    from bot.room.service import RoomService

    monkeypatch.chdir(tmp_path)
    shutil.copytree(index_dir, tmp_path / "indexes")
    settings = load_settings(
        data_dir=tmp_path,
        serve_http=False,
        reply_threshold=0.0,  # the tiny corpus: always answer with links
        sync_timeout_ms=1000,
        user_cooldown_seconds=0,
        reindex_schedule="off",
        index_watch_seconds=0,
    )
    assert settings.uses_local_room
    db = Database(settings.resolved_database_url)
    db.create_schema()
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    bot = settings.local_bot_user
    old = room.post(room.user_id_for("early"), "a question from before the bot started?")
    transport = LocalTransport(
        room, sync_timeout_ms=settings.sync_timeout_ms, history_depth=settings.history_depth
    )
    answerer = LiveAnswerer(settings, Retriever(load_index(settings.index_root), encoder))
    store = RoomStore(db)
    service = RoomService(settings, transport, store, answerer)
    app = make_app(db, room, tmp_path)

    def bot_replies() -> list[dict[str, Any]]:
        return [raw for _, raw in room.events_after(0, 1000) if raw["sender"] == bot]

    async def outcome(event_id: str) -> str | None:
        return await asyncio.to_thread(_outcome, db, event_id)

    async def scenario() -> None:
        running = asyncio.create_task(service.run())
        try:
            await async_wait_until(
                lambda: asyncio.to_thread(lambda: store.sync_token() is not None),
                "the first sync",
            )
            async with TestClient(TestServer(app)) as client:
                token = await csrf_token(client)
                form = {
                    "csrf": token,
                    "name": "alice",
                    "body": "how do I stop training early when the validation loss stops "
                    "improving?",
                    "mention_bot": "on",
                }
                posted = await client.post("/room/messages", data=form, allow_redirects=False)
                assert posted.status == 303
                question = posted.headers["Location"].split("#", 1)[1]

                async def replied() -> bool:
                    return bool(await asyncio.to_thread(bot_replies))

                await async_wait_until(replied, "the bot's reply")
                [reply] = bot_replies()
                content = reply["content"]
                assert content["msgtype"] == "m.notice"
                assert content["m.relates_to"]["rel_type"] == "m.thread"
                assert content["m.relates_to"]["event_id"] == question
                assert content["m.relates_to"]["m.in_reply_to"] == {"event_id": question}
                assert content["m.mentions"] == {"user_ids": ["@alice:supportbot.localhost"]}
                assert "https://keras.io/" in content["body"]
                assert '<a href="https://keras.io/' in content["formatted_body"]

                html = await (await client.get("/room")).text()
                assert in_thread_of(html, reply["event_id"], question)
                assert "bot" in messages_in(html)[reply["event_id"]][0]
                assert '<a href="https://keras.io/' in html

                async def handled() -> bool:
                    return await outcome(reply["event_id"]) is not None

                await async_wait_until(handled, "the bot's own reply coming back through sync")
                assert await outcome(reply["event_id"]) == "ignored:own-message"
                assert await outcome(question) == "replied"
                assert await outcome(old) == "history"  # stored for triage, never answered
        finally:
            service.request_stop()
            await running

    try:
        asyncio.run(scenario())
        assert len(bot_replies()) == 1
    finally:
        db.close()


def test_a_second_mention_inside_the_cooldown_is_answered_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index_dir: Path, encoder: Any
) -> None:
    """Tried as a new user: two questions to the bot a few seconds apart both get answers."""
    from bot.retrieval.index import load_index
    from bot.retrieval.search import Retriever
    from bot.room.answerer import LiveAnswerer
    from bot.room.service import RoomService

    cooldown = 3.0
    monkeypatch.chdir(tmp_path)
    shutil.copytree(index_dir, tmp_path / "indexes")
    settings = load_settings(
        data_dir=tmp_path,
        serve_http=False,
        reply_threshold=0.0,
        sync_timeout_ms=1000,
        user_cooldown_seconds=cooldown,
        reindex_schedule="off",
        index_watch_seconds=0,
    )
    db = Database(settings.resolved_database_url)
    db.create_schema()
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    bot = settings.local_bot_user
    transport = LocalTransport(
        room, sync_timeout_ms=settings.sync_timeout_ms, history_depth=settings.history_depth
    )
    answerer = LiveAnswerer(settings, Retriever(load_index(settings.index_root), encoder))
    store = RoomStore(db)
    service = RoomService(settings, transport, store, answerer)
    alice = room.user_id_for("alice")

    def bot_replies() -> list[dict[str, Any]]:
        return [raw for _, raw in room.events_after(0, 1000) if raw["sender"] == bot]

    async def replies(n: int) -> bool:
        return len(await asyncio.to_thread(bot_replies)) >= n

    async def scenario() -> tuple[str, str]:
        running = asyncio.create_task(service.run())
        try:
            await async_wait_until(
                lambda: asyncio.to_thread(lambda: store.sync_token() is not None),
                "the first sync",
            )
            first = room.post(alice, "supportbot: how do I stop training early?", mentions=[bot])
            await async_wait_until(lambda: replies(1), "the first reply")
            second = room.post(
                alice, "supportbot: and how do I save the best model?", mentions=[bot]
            )
            await async_wait_until(lambda: replies(2), "the second reply, after the cooldown")

            async def handled() -> bool:
                return await asyncio.to_thread(_outcome, db, second) == "replied"

            await async_wait_until(handled, "the second mention marked handled")
            return first, second
        finally:
            service.request_stop()
            await running

    try:
        first, second = asyncio.run(scenario())
        replied = [r["content"]["m.relates_to"]["event_id"] for r in bot_replies()]
        assert replied == [first, second]  # one reply each, in its own thread
        one, two = store.reply(first), store.reply(second)
        assert one is not None and two is not None
        # Deferred, not dropped, and not answered before the cooldown had passed.
        assert two.created_at >= one.created_at + timedelta(seconds=cooldown)
        assert _outcome(db, first) == "replied"
    finally:
        db.close()


def _outcome(db: Database, event_id: str) -> str | None:
    from bot.store.models import RoomEventRow

    with db.session() as s:
        row = s.get(RoomEventRow, event_id)
        return None if row is None else row.outcome


@sqlite_only
def test_the_room_is_public_in_the_served_app(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    """Mounted by ``build_app`` (dashboard sign-in in front): the room needs no sign-in and
    its own token is the only one its form needs; the dashboard stays closed."""
    from bot.web.app import build_app

    ctx = make_app(db, room, tmp_path)[CTX_KEY]

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)
        form = {"csrf": token, "name": "alice", "body": "hello?", "mention_bot": "on"}
        posted = await client.post("/room/messages", data=form, allow_redirects=False)
        assert posted.status == 303
        assert len(await (await client.get("/room/events?since=0")).json()) == 1
        assert (await client.get("/static/room.js")).status == 200
        assert (await client.post("/room/messages", data={**form, "csrf": ""})).status == 403
        queue = await client.get("/queue", allow_redirects=False)
        assert queue.status in (302, 303) and "/login" in queue.headers["Location"]

    with_client(build_app(ctx), scenario)


# --- `supportbot run` without a homeserver -----------------------------------------------------
def test_run_without_http_refuses_the_local_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_SERVE_HTTP", "false")
    assert main(["run", "--data-dir", str(tmp_path)]) == 2
    assert "the local room is a web page: set SUPPORTBOT_SERVE_HTTP=true" in capsys.readouterr().err


def test_supportbot_run_serves_the_local_room(tmp_path: Path, index_dir: Path) -> None:
    """The real command: no Matrix settings, so it prints the room's address and answers there."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.parse
    import urllib.request
    from http.cookiejar import CookieJar

    data = tmp_path / "data"
    shutil.copytree(index_dir, data / "indexes")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        SUPPORTBOT_DATA_DIR=str(data),
        SUPPORTBOT_DEVICE="cpu",
        SUPPORTBOT_WEB_PORT="0",
        SUPPORTBOT_REPLY_THRESHOLD="0.0",
        SUPPORTBOT_REINDEX_SCHEDULE="off",
    )
    out = (tmp_path / "stdout").open("w+")
    err = (tmp_path / "stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        stdout=out,
        stderr=err,
        text=True,
    )
    try:
        wait_until(
            lambda: "Local room: " in (tmp_path / "stdout").read_text() or proc.poll() is not None,
            "the local room's address",
            timeout=120,
        )
        printed = (tmp_path / "stdout").read_text()
        match = re.search(r"Local room: (http://127\.0\.0\.1:\d+/room)\n", printed)
        assert match, printed + (tmp_path / "stderr").read_text()
        url = match.group(1)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url.removesuffix("/room") + "/readyz") as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        # Ready = the first /sync is done: a message posted before it would be read as the
        # room's history, which the bot triages but never answers late.
        wait_until(ready, "the first sync", timeout=120)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        page = opener.open(url).read().decode()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        form = {
            "csrf": token.group(1),
            "name": "alice",
            "body": "how can I save my whole model to one file and load it back?",
            "mention_bot": "on",
        }
        opener.open(url + "/messages", urllib.parse.urlencode(form).encode())

        def bot_reply() -> dict[str, Any] | None:
            events = json.loads(opener.open(url + "/events?since=0").read())
            return next((e for e in events if e.get("bot")), None)

        wait_until(lambda: bot_reply() is not None, "the bot's reply", timeout=120)
        reply = bot_reply()
        assert reply is not None and reply["thread_root"]
        assert '<a href="https://keras.io/' in reply["html"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        out.close()
        err.close()
    assert code == 0, (tmp_path / "stderr").read_text()


def test_run_refuses_a_malformed_local_room_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_LOCAL_ROOM_ID", "local")
    assert main(["run", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "SUPPORTBOT_LOCAL_ROOM_ID" in err and "!name:server" in err


# --- limits: post rate, byte budget, retention, where it may be served --------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@sqlite_only
def test_posts_are_limited_per_name_with_429_and_retry_after(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    app = make_app(
        db,
        room,
        tmp_path,
        local_room_posts_per_minute_per_name=2,
        local_room_posts_per_minute_per_address=100,
    )
    clock = FakeClock()
    app[POST_LIMITER_KEY].clock = clock

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)

        async def post(name: str, body: str, **headers: str) -> Any:
            form = {"csrf": token, "name": name, "body": body}
            return await client.post(
                "/room/messages", data=form, headers=headers, allow_redirects=False
            )

        assert (await post("alice", "one")).status == 303
        clock.now += 10
        assert (await post("Alice", "two")).status == 303
        refused = await post("alice", "three")
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "50"  # the first post leaves the window then
        assert await refused.text() == (
            "Not sent: too many messages under this name; try again in 50 s."
        )
        as_json = await post("alice", "three", Accept="application/json")
        assert as_json.status == 429 and "under this name" in (await as_json.json())["error"]
        assert (await post("bob", "bob is fine")).status == 303
        clock.now += 50
        assert (await post("alice", "three")).status == 303

    with_client(app, scenario)
    bodies = [raw["content"]["body"] for _, raw in room.events_after(0)]
    assert bodies == ["one", "two", "bob is fine", "three"]


@sqlite_only
def test_posts_are_limited_per_address_whatever_the_name(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    app = make_app(
        db,
        room,
        tmp_path,
        local_room_posts_per_minute_per_name=100,
        local_room_posts_per_minute_per_address=3,
    )
    clock = FakeClock()
    app[POST_LIMITER_KEY].clock = clock

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        token = await csrf_token(client)
        statuses = []
        for name in ("a1", "a2", "", "a4", "a5"):  # a refused (nameless) post counts too
            form = {"csrf": token, "name": name, "body": "flood"}
            posted = await client.post("/room/messages", data=form, allow_redirects=False)
            statuses.append(posted.status)
        assert statuses == [303, 303, 400, 429, 429]
        clock.now += 61
        form = {"csrf": token, "name": "a6", "body": "later"}
        assert (await client.post("/room/messages", data=form, allow_redirects=False)).status == 303

    with_client(app, scenario)
    assert count_rows(db) == 3


@sqlite_only
def test_the_page_and_the_poll_stay_within_the_byte_budget(
    db: Database, room: LocalRoom, tmp_path: Path
) -> None:
    big = "x" * 50_000
    ids = [room.post(ALICE, f"{i} {big}") for i in range(30)]
    budget = 200_000
    app = make_app(db, room, tmp_path, local_room_page_bytes=budget)

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        page = await client.get("/room")
        html = await page.text()
        shown = [i for i in ids if i in messages_in(html)]
        assert shown == ids[-3:]  # the newest messages that fit 200 KB, in order
        assert len(html.encode()) < 2 * budget

        seen: list[str] = []
        since = 0
        for _ in range(30):
            batch = await (await client.get(f"/room/events?since={since}")).json()
            if not batch:
                break
            assert 1 <= len(batch) <= 3
            seen += [e["event_id"] for e in batch]
            since = batch[-1]["seq"]
        assert seen == ids  # the poll continues where a full batch stopped: nothing is lost

    with_client(app, scenario)


def test_reads_within_a_budget_return_at_least_one_event(room: LocalRoom) -> None:
    first = room.post(ALICE, "y" * 50_000)
    second = room.post(ALICE, "short")
    assert [raw["event_id"] for _, raw in room.recent(10, max_bytes=10)] == [second]
    assert [raw["event_id"] for _, raw in room.events_after(0, 10, max_bytes=10)] == [first]
    both = event_size(room.event(first) or {}) + event_size(room.event(second) or {})
    assert len(room.recent(10, max_bytes=both)) == 2
    assert len(room.recent(1, max_bytes=both)) == 1


def test_retention_keeps_the_newest_and_what_is_pending(db: Database) -> None:
    room = LocalRoom(db, ROOM, BOT, retention=Retention(keep_events=3, keep_days=0))
    ids = [room.post(ALICE, f"message {i}") for i in range(12)]
    store = RoomStore(db)
    events = [e for _, raw in room.events_after(0, 100) if (e := parse_event(ROOM, raw))]
    store.persist_batch(events, None)
    for e in events:
        if e.event_id != ids[1]:  # ids[1]: read, still being handled
            store.mark_handled(e.event_id, "done")
    store.claim_reply(  # ids[2]: its reply is on its way
        question_event_id=ids[2],
        room_id=ROOM,
        txn_id="t2",
        body="b",
        formatted_body="<p>b</p>",
        thread_root=ids[2],
    )
    # The bot has read up to ids[10]; ids[11] is not read yet.
    seqs = {raw["event_id"]: seq for seq, raw in room.events_after(0, 100)}
    store.set_state(SYNC_TOKEN_KEY, str(seqs[ids[10]]))

    assert room.prune() == 7
    left = [raw["event_id"] for _, raw in room.events_after(0, 100)]
    assert left == [ids[1], ids[2], ids[9], ids[10], ids[11]]

    # By age: 31 days on, everything read and done goes; the unread and pending stay.
    aged = LocalRoom(db, ROOM, BOT, retention=Retention(keep_events=0, keep_days=30))
    assert aged.prune(now_ms=int(time.time() * 1000) + 31 * 86_400_000) == 2
    assert [raw["event_id"] for _, raw in room.events_after(0, 100)] == [ids[1], ids[2], ids[11]]
    assert LocalRoom(db, ROOM, BOT).prune() == 0  # no retention: nothing pruned


def test_posting_prunes_when_due(db: Database) -> None:
    RoomStore(db).set_state(SYNC_TOKEN_KEY, "1000000")  # the bot has read everything
    room = LocalRoom(db, ROOM, BOT, retention=Retention(keep_events=2, every_seconds=0))
    ids = [room.post(ALICE, f"message {i}") for i in range(5)]
    assert [raw["event_id"] for _, raw in room.events_after(0, 100)] == ids[-2:]
    # Never before the bot has read an event: a fresh room (no sync token) keeps everything.
    fresh = LocalRoom(db, "!other:test.localhost", BOT, retention=Retention(1, every_seconds=0))
    RoomStore(db).set_state(SYNC_TOKEN_KEY, "0")
    kept = [fresh.post(ALICE, f"m{i}") for i in range(3)]
    assert [raw["event_id"] for _, raw in fresh.events_after(0, 100)] == kept


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"SUPPORTBOT_WEB_HOST": "0.0.0.0"}, True),
        ({"SUPPORTBOT_WEB_HOST": "192.168.1.5"}, True),
        ({"SUPPORTBOT_WEB_HOST": "0.0.0.0", "SUPPORTBOT_ROOM_TRANSPORT": "local"}, False),
        ({"SUPPORTBOT_WEB_HOST": "127.0.0.2"}, False),
        ({"SUPPORTBOT_WEB_HOST": "::1"}, False),
        ({"SUPPORTBOT_WEB_HOST": "localhost"}, False),
    ],
)
def test_the_local_room_is_served_beyond_loopback_only_when_asked(
    env: dict[str, str], refused: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.errors import ConfigError
    from bot.settings import check_local_room_bind

    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(data_dir=tmp_path)
    if refused:
        with pytest.raises(ConfigError, match="SUPPORTBOT_ROOM_TRANSPORT=local"):
            check_local_room_bind(settings)
    else:
        check_local_room_bind(settings)


def test_run_on_a_wildcard_bind_refuses_the_implicit_local_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUPPORTBOT_WEB_HOST", "0.0.0.0")
    assert main(["run", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "SUPPORTBOT_ROOM_TRANSPORT=local to serve the local room there on purpose" in err
    assert "Traceback" not in err
