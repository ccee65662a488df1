"""The triage dashboard, page by page, on the aiohttp test server over a real SQLite database.

Questions are stored the way the service stores them; "Try it" and the index page use the real
tiny index (``index_dir``) and model (``encoder``). Posting goes through a recording
``post_reply`` here; the service's own poster (``RoomService.dashboard.post``) is tested at the
end against the real local room transport.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bot.chat.events import PowerLevels, RoomEvent
from bot.chat.local_transport import LocalTransport
from bot.chat.transport import OutgoingReply
from bot.errors import TransientError
from bot.retrieval.index import load_index
from bot.retrieval.search import Retriever
from bot.room.answerer import LiveAnswerer
from bot.room.service import RoomService
from bot.settings import load_settings
from bot.store.dashboard_store import LAST_BUILD_KEY, DashboardStore
from bot.store.database import Database
from bot.store.local_room import LocalRoom
from bot.store.models import QuestionRow, SuggestionVoteRow
from bot.store.room_store import RoomStore
from bot.web.context import WebContext, context_for
from tests.room.test_service_units import code_of, outcome_of
from tests.web.web_helpers import (
    ALICE,
    BOB,
    OTHER_ROOM,
    ROOM,
    add_question,
    add_user,
    csrf_in,
    login,
    make_context,
    room_event,
    serve,
    signed_in,
)

Client = TestClient[Any, Any]
XSS = "<img src=x onerror=alert(1)>"
QUESTION = "How do I stop training when the validation loss stops improving?"


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-event-id="([^"]+)"', html)


def question_row(ctx: WebContext, event_id: str) -> QuestionRow:
    with ctx.db.session() as s:
        row = s.get(QuestionRow, event_id)
        assert row is not None
        return row


class RecordingPoster:
    """Stands in for the room behind ``post_reply``: records, or fails like a network would."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.failure = failure

    async def __call__(self, event_id: str, body: str, user: str) -> str:
        self.calls.append((event_id, body, user))
        if self.failure is not None:
            raise self.failure
        return "$posted"


# --- the queue -----------------------------------------------------------------------------------
def test_queue_lists_open_questions_newest_first_with_their_facts(
    tmp_path: Path, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$old", "how do I save a model?", confidence=0.42, status="new")
    add_question(ctx.store, "$new", "how do I freeze layers?", sender=BOB, confidence=0.91)
    add_question(ctx.store, "$done", "answered already?", status="answered_bot")
    add_question(ctx.store, "$gone", "dismissed?", status="dismissed")

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/queue")).text()
        assert row_ids(html) == ["$new", "$old"]  # open = new + suggested, newest first
        assert "how do I freeze layers?" in html and BOB in html and ROOM in html
        assert "91%" in html and "42%" in html
        assert "Suggestion ready" in html and ">New<" in html
        assert 'href="/questions/%24new"' in html
        assert "2 questions" in html
        assert 'href="/queue"' in html and "Refresh" in html  # the no-JavaScript path
        assert '<script src="/static/queue.js" defer>' in html
        everything = await (await client.get("/queue?status=all")).text()
        assert row_ids(everything) == ["$gone", "$done", "$new", "$old"]
        assert ">Replied<" in everything and "Dismissed" in everything  # answered_bot: replied
        only = await (await client.get("/queue?status=dismissed")).text()
        assert row_ids(only) == ["$gone"]

    serve(ctx, scenario)


def test_queue_filters_by_room_and_confidence(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$low", "low?", confidence=0.2)
    add_question(ctx.store, "$mid", "mid?", confidence=0.55, room=OTHER_ROOM)
    add_question(ctx.store, "$high", "high?", confidence=0.9)
    add_question(ctx.store, "$none", "none?", confidence=None, status="new", suggestion=None)

    async def ids(client: Client, query: str) -> list[str]:
        response = await client.get("/queue?" + query)
        assert response.status == 200, await response.text()
        return row_ids(await response.text())

    async def scenario(client: Client) -> None:
        await signed_in(client)
        assert await ids(client, "room=" + quote(OTHER_ROOM)) == ["$mid"]
        assert await ids(client, "min_confidence=50") == ["$high", "$mid"]
        assert await ids(client, "max_confidence=55") == ["$mid", "$low"]
        assert await ids(client, "min_confidence=30&max_confidence=60") == ["$mid"]
        assert await ids(client, "min_confidence=50&room=" + quote(ROOM)) == ["$high"]
        html = await (await client.get("/queue?room=" + quote(OTHER_ROOM))).text()
        assert f'<option value="{OTHER_ROOM}" selected>' in html  # the form keeps its values
        for bad in ("min_confidence=abc", "max_confidence=150", "status=nope", "page=x"):
            response = await client.get("/queue?" + bad)
            assert response.status == 400, bad
            assert bad.split("=")[0] in await response.text()

    serve(ctx, scenario)


def test_queue_pages_of_25(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    for n in range(30):
        add_question(ctx.store, f"$q{n:02d}", f"question number {n}?", ts=1_700_000_000_000 + n)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        first = await (await client.get("/queue?min_confidence=10")).text()
        assert row_ids(first) == [f"$q{n:02d}" for n in range(29, 4, -1)]
        assert "page 1 of 2" in first
        assert 'href="/queue?min_confidence=10&amp;page=2" rel="next"' in first
        assert 'rel="prev"' not in first
        second = await (await client.get("/queue?min_confidence=10&page=2")).text()
        assert row_ids(second) == [f"$q{n:02d}" for n in range(4, -1, -1)]
        assert 'href="/queue?min_confidence=10" rel="prev"' in second
        assert 'rel="next"' not in second
        # Live rows are only added at the top of the first page.
        assert "data-updates-url" in first and "data-updates-url" not in second

    serve(ctx, scenario)


def test_updates_endpoint_returns_rows_queued_since(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$first", "the first question?")

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/queue")).text()
        updates_url = re.search(r'data-updates-url="([^"]+)"', html)
        after = re.search(r'data-after="([^"]+)"', html)
        assert updates_url and after
        url = updates_url.group(1).replace("&amp;", "&")
        sep = "&" if "?" in url else "?"

        async def poll(since: str) -> dict[str, Any]:
            response = await client.get(f"{url}{sep}after={quote(since)}")
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/json")
            data: dict[str, Any] = await response.json()
            return data

        nothing = await poll(after.group(1))
        assert nothing["items"] == [] and nothing["latest"] == after.group(1)
        add_question(ctx.store, "$second", f"a new one {XSS}", sender=BOB)
        add_question(ctx.store, "$closed", "answered at once", status="answered_bot")
        fresh = await poll(after.group(1))
        assert [i["event_id"] for i in fresh["items"]] == ["$second"]  # same filters: open only
        row = fresh["items"][0]["html"]
        assert row.startswith('<tr data-event-id="$second">') and BOB in row
        assert XSS not in row and "&lt;img src=x onerror=alert(1)&gt;" in row
        assert fresh["latest"] > after.group(1)
        assert (await poll(fresh["latest"]))["items"] == []
        # Another room's filter does not see it.
        other = await client.get(
            f"/queue/updates?room={quote(OTHER_ROOM)}&after={quote(after.group(1))}"
        )
        assert (await other.json())["items"] == []
        bad = await client.get("/queue/updates?after=yesterday")
        assert bad.status == 400

    serve(ctx, scenario)


def test_user_text_is_escaped_everywhere(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(
        ctx.store,
        "$xss",
        XSS,
        sender=f"@{XSS}:example.org",
        suggestion=f"Try this {XSS} [link](javascript:alert(1))",
    )
    ctx.store.persist_batch(
        [room_event("$r", XSS, sender=BOB, rel_type="m.thread", relates_to="$xss", ts=2)], None
    )

    async def scenario(client: Client) -> None:
        await signed_in(client)
        for path in ("/queue", "/questions/%24xss", "/try?q=" + quote(XSS)):
            html = await (await client.get(path)).text()
            assert XSS not in html, path
            assert "onerror=alert(1)&gt;" in html or path.startswith("/try"), path
            assert 'href="javascript:' not in html, path

    serve(ctx, scenario)


# --- one question --------------------------------------------------------------------------------
def test_question_page_shows_the_thread_suggestion_and_sources(
    tmp_path: Path, database_url: str
) -> None:
    # Confident at 70 %: the editor is prefilled (tests/test_web_queue_ux.py: an unsure one).
    ctx = make_context(
        tmp_path, database_url, settings={"reply_threshold": 0.6}, post_reply=RecordingPoster()
    )
    add_user(ctx)
    base = 1_700_000_000_000
    add_question(ctx.store, "$q", "how do I stop training early?", ts=base)
    ctx.store.persist_batch(
        [
            room_event("$unrelated", "something else entirely", sender=BOB, ts=base + 1),
            room_event(
                "$in-thread",
                "try a callback",
                sender=BOB,
                rel_type="m.thread",
                relates_to="$q",
                ts=base + 3,
            ),
            room_event("$reply", "same problem here", sender=BOB, in_reply_to="$q", ts=base + 2),
            room_event(
                "$edit",
                "try the EarlyStopping callback",
                sender=BOB,
                rel_type="m.replace",
                relates_to="$in-thread",
                ts=base + 4,
            ),
        ],
        None,
    )
    ctx.store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="t1",
        body="the bot's answer",
        formatted_body="<p>the bot's answer</p>",
        thread_root="$q",
    )
    ctx.store.mark_reply_sent("$q", "$bot-reply")

    async def scenario(client: Client) -> None:
        await signed_in(client)
        response = await client.get("/questions/%24q")
        assert response.status == 200
        html = await response.text()
        order = [
            html.index(text)
            for text in (
                "how do I stop training early?",
                "same problem here",
                "try the EarlyStopping callback",
                "<p>the bot's answer</p>",
            )
        ]
        assert order == sorted(order)  # in time order
        assert "something else entirely" not in html
        assert "try a callback<" not in html  # the edit's text replaces it
        assert "edited" in html
        assert "EarlyStopping" in html and "https://keras.io/api/callbacks/early_stopping/" in html
        assert ">api<" in html and "70%" in html and "best match" in html  # kind, confidence
        assert "retrieval score 0.812" in html  # the raw score only as a tooltip
        assert '<a href="https://keras.io/api/callbacks/early_stopping/">EarlyStopping</a>' in html
        editor = re.search(r'<textarea id="reply-body" name="body"[^>]*>([^<]*)</textarea>', html)
        assert editor and "See [EarlyStopping](" in editor.group(1)
        for action in ("post", "answered", "dismiss", "vote"):
            assert f'action="/questions/%24q/{action}"' in html
        assert html.count('name="csrf_token"') >= 5  # every form, sign-out included
        missing = await client.get("/questions/%24nope")
        assert missing.status == 404

    serve(ctx, scenario)


BOT_REPLY = (
    "This looks covered by **keras.callbacks.EarlyStopping**:\n\n"
    "1. [keras.callbacks.EarlyStopping](https://keras.io/api/callbacks/early_stopping/) — "
    "Stop `training` when val_loss \\*stops\\* \\<img src=x onerror=alert(1)>\n"
    "   ```python\n"
    "   stopper = keras.callbacks.EarlyStopping(monitor='val_loss', patience=3)\n"
    "   ```\n"
    "2. [click](javascript:alert(1))\n\n"
    "Confidence: 72%"
)


@pytest.mark.parametrize("echoed", [False, True])
def test_the_bots_reply_in_the_thread_is_rendered_and_peoples_text_is_not(
    tmp_path: Path, echoed: bool, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    base = 1_700_000_000_000
    add_question(ctx.store, "$q", "how do I **stop** early? <b>now</b>", ts=base)
    ctx.store.claim_reply(
        question_event_id="$q",
        room_id=ROOM,
        txn_id="t1",
        body=BOT_REPLY,
        formatted_body="<p>unused here</p>",
        thread_root="$q",
    )
    ctx.store.mark_reply_sent("$q", "$bot-reply")
    events = [
        room_event(
            "$person",
            "try `EarlyStopping` **now** [x](javascript:alert(1)) " + XSS,
            sender=BOB,
            rel_type="m.thread",
            relates_to="$q",
            ts=base + 5,
        )
    ]
    if echoed:  # the room's copy of the reply, as /sync brings it back
        events.append(
            room_event(
                "$bot-reply",
                BOT_REPLY,
                sender="@supportbot:example.org",
                rel_type="m.thread",
                relates_to="$q",
                ts=base + 3,
            )
        )
    ctx.store.persist_batch(events, None)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/questions/%24q")).text()
        thread = html[html.index('id="thread-h"') : html.index('id="suggestion-h"')]
        # The bot's reply: rendered Markdown, its code a python block, nothing unsafe.
        assert "<strong>keras.callbacks.EarlyStopping</strong>" in thread
        assert (
            '<a href="https://keras.io/api/callbacks/early_stopping/">'
            "keras.callbacks.EarlyStopping</a>"
        ) in thread
        assert '<pre><code class="language-python">stopper = keras.callbacks.EarlyStopping(' in (
            thread
        )
        assert "<code>training</code>" in thread and "*stops*" in thread
        assert "&lt;img src=x onerror=alert(1)&gt;" in thread and XSS not in thread
        assert 'href="javascript:' not in thread and "[click](javascript:alert(1))" in thread
        assert "\\" not in thread and "```" not in thread
        assert thread.count("<strong>keras.callbacks.EarlyStopping</strong>") == 1
        # People's messages stay text: escaped, no Markdown rendering.
        assert "how do I **stop** early? &lt;b&gt;now&lt;/b&gt;" in thread
        assert "try `EarlyStopping` **now** [x](javascript:alert(1)) &lt;img" in thread

    serve(ctx, scenario)


def test_post_to_thread_records_who_and_marks_answered(tmp_path: Path, database_url: str) -> None:
    poster = RecordingPoster()
    ctx = make_context(tmp_path, database_url, post_reply=poster)
    add_user(ctx)
    add_question(ctx.store, "$a/b+c:x", "how do I save?")  # an old-style id with / and +

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        url = "/questions/" + quote("$a/b+c:x", safe="")
        form = {"csrf_token": csrf, "body": "Use `model.save('m.keras')`.\r\n"}
        response = await client.post(url + "/post", data=form, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"].endswith("?flash=posted")
        assert poster.calls == [("$a/b+c:x", "Use `model.save('m.keras')`.", "maria")]
        page = await client.get(response.headers["Location"])
        html = await page.text()
        assert page.status == 200 and "Posted to the thread." in html
        assert "how do I save?" in html

    serve(ctx, scenario)
    # Recording the answer is the poster's job (the service's dashboard.post, tested
    # below and against Synapse), not the page's: the recording fake left the row alone.
    assert question_row(ctx, "$a/b+c:x").status == "suggested"


def test_failed_post_keeps_the_text_and_says_why(tmp_path: Path, database_url: str) -> None:
    poster = RecordingPoster(TransientError("the homeserver answered 502"))
    ctx = make_context(tmp_path, database_url, post_reply=poster)
    add_user(ctx)
    add_question(ctx.store, "$q", "how do I save?")

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        text = "My carefully written <answer> & more"
        response = await client.post(
            "/questions/%24q/post", data={"csrf_token": csrf, "body": text}
        )
        assert response.status == 502
        html = await response.text()
        assert "Could not post to the room: the homeserver answered 502" in html
        assert "My carefully written &lt;answer&gt; &amp; more</textarea>" in html
        empty = await client.post("/questions/%24q/post", data={"csrf_token": csrf, "body": " "})
        assert empty.status == 400 and "The reply is empty." in await empty.text()

    serve(ctx, scenario)
    assert question_row(ctx, "$q").status == "suggested"  # nothing changed


def test_posting_is_explained_when_not_connected(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)  # no post_reply: e.g. the web app alone
    add_user(ctx)
    add_question(ctx.store, "$q", "how do I save?")

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        html = await (await client.get("/questions/%24q")).text()
        assert "disabled" in html and "Posting needs the running bot" in html
        response = await client.post("/questions/%24q/post", data={"csrf_token": csrf, "body": "x"})
        assert response.status == 503

    serve(ctx, scenario)


def test_mark_answered_dismiss_and_reopen_record_the_maintainer(
    tmp_path: Path, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$a", "first?")
    add_question(ctx.store, "$d", "second?")

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        done = await client.post(
            "/questions/%24a/answered", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert done.status == 303 and done.headers["Location"].endswith("?flash=answered")
        gone = await client.post(
            "/questions/%24d/dismiss", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert gone.status == 303 and gone.headers["Location"].endswith("?flash=dismissed")
        assert row_ids(await (await client.get("/queue")).text()) == []
        page = await (await client.get("/questions/%24d?flash=dismissed")).text()
        assert "Dismissed." in page and "Reopen" in page and "last handled by maria" in page
        back = await client.post(
            "/questions/%24d/reopen", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert back.status == 303
        assert row_ids(await (await client.get("/queue")).text()) == ["$d"]
        missing = await client.post("/questions/%24nope/dismiss", data={"csrf_token": csrf})
        assert missing.status == 404

    serve(ctx, scenario)
    answered = question_row(ctx, "$a")
    assert (answered.status, answered.handled_by) == ("answered_person", "maria")
    assert answered.answered_at is not None
    reopened = question_row(ctx, "$d")
    assert (reopened.status, reopened.handled_by) == ("suggested", "maria")


@pytest.mark.parametrize("action", ["post", "answered", "dismiss", "reopen", "vote"])
def test_question_actions_refuse_a_missing_or_wrong_csrf_token(
    tmp_path: Path, action: str, database_url: str
) -> None:
    poster = RecordingPoster()
    ctx = make_context(tmp_path, database_url, post_reply=poster)
    add_user(ctx)
    add_question(ctx.store, "$q", "how?")

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        for data in ({"body": "hi", "vote": "up"}, {"csrf_token": csrf[:-1], "vote": "up"}):
            response = await client.post(f"/questions/%24q/{action}", data=data)
            assert response.status == 403

    serve(ctx, scenario)
    assert poster.calls == []
    row = question_row(ctx, "$q")
    assert (row.status, row.handled_by) == ("suggested", None)
    with ctx.db.session() as s:
        assert s.scalars(select(SuggestionVoteRow)).all() == []


def test_votes_one_per_user_and_changeable(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_user(ctx, "otto")
    add_question(ctx.store, "$q", "how?")

    async def vote(client: Client, csrf: str, value: str) -> str:
        response = await client.post(
            "/questions/%24q/vote", data={"csrf_token": csrf, "vote": value}
        )
        assert response.status == 200
        return await response.text()

    def votes() -> dict[str, int]:
        with ctx.db.session() as s:
            return {v.user_name: v.vote for v in s.scalars(select(SuggestionVoteRow))}

    async def maria(client: Client) -> None:
        csrf = await signed_in(client)
        html = await vote(client, csrf, "up")
        assert "Thanks, your vote is recorded." in html
        assert 'aria-pressed="true" aria-label="Good suggestion">👍 Good 1<' in html
        await vote(client, csrf, "up")  # twice is still one vote
        assert votes() == {"maria": 1}
        html = await vote(client, csrf, "down")
        assert votes() == {"maria": -1}
        assert (
            "👍 Good 0<" in html
            and 'aria-pressed="true" aria-label="Bad suggestion">👎 Bad 1<' in html
        )
        bad = await client.post("/questions/%24q/vote", data={"csrf_token": csrf, "vote": "9"})
        assert bad.status == 400

    async def otto(client: Client) -> None:
        csrf = await signed_in(client, "otto")
        html = await vote(client, csrf, "up")
        assert "👍 Good 1<" in html and "👎 Bad 1<" in html
        await vote(client, csrf, "none")  # the pressed button withdraws it
        assert votes() == {"maria": -1}

    async def both() -> None:
        from aiohttp.test_utils import TestServer

        from bot.web.app import build_app

        app = build_app(ctx)
        async with TestClient(TestServer(app)) as first:
            await maria(first)
        async with TestClient(TestServer(build_app(ctx))) as second:
            await otto(second)

    try:
        asyncio.run(both())
    finally:
        ctx.db.close()


# --- try it --------------------------------------------------------------------------------------
@pytest.fixture
def answerer(tmp_path: Path, index_dir: Path, encoder: Any) -> LiveAnswerer:
    shutil.copytree(index_dir, tmp_path / "indexes")
    settings = load_settings(data_dir=tmp_path, reply_threshold=0.3)
    return LiveAnswerer(settings, Retriever(load_index(settings.index_root), encoder))


@pytest.fixture
def cpu() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cpu-test")
    yield executor
    executor.shutdown(wait=True)


def test_try_it_shows_ranked_sources_and_the_reply(
    tmp_path: Path, answerer: LiveAnswerer, cpu: ThreadPoolExecutor, database_url: str
) -> None:
    threads: list[str] = []

    async def run_cpu(fn: Any) -> Any:
        def tracked() -> Any:
            import threading

            threads.append(threading.current_thread().name)
            return fn()

        return await asyncio.get_running_loop().run_in_executor(cpu, tracked)

    ctx = make_context(tmp_path, database_url, answer=answerer, run_cpu=run_cpu)
    add_user(ctx)
    expected = answerer(QUESTION)

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        page = await client.get("/try")
        assert page.status == 200 and "Would it reply?" not in await page.text()
        response = await client.get("/try?q=" + quote(QUESTION))
        assert response.status == 200
        html = await response.text()
        assert "Would it reply?" in html
        positions = [html.index(s.title) for s in expected.sources]
        assert positions == sorted(positions) and expected.sources
        for source in expected.sources:
            assert f'<a href="{source.url}"' in html
            assert f"{source.score:.3f}" in html
        verdict = "Yes: confidence" if expected.would_reply else "No: confidence"
        assert verdict in html and "threshold of 30%" in html
        assert "<ol>" in html and "<li>" in html  # the reply rendered from Markdown
        assert expected.markdown.splitlines()[0].split("**")[0] in html
        posted = await client.post("/try", data={"csrf_token": csrf, "q": QUESTION})
        assert posted.status == 200 and "Would it reply?" in await posted.text()

    serve(ctx, scenario)
    assert threads == ["cpu-test_0", "cpu-test_0"]  # the service's CPU worker, not the loop


def test_try_it_without_an_index(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        response = await client.get("/try?q=anything")
        assert response.status == 503
        assert "No index is loaded" in await response.text()

    serve(ctx, scenario)


# --- the index page ------------------------------------------------------------------------------
def test_index_page_and_rebuild(tmp_path: Path, answerer: LiveAnswerer, database_url: str) -> None:
    rebuilds: list[str] = []

    async def rebuild() -> None:
        rebuilds.append("started")

    manifest = answerer.retriever.index.manifest
    ctx = make_context(
        tmp_path, database_url, rebuild=rebuild, index_manifest=lambda: dict(manifest)
    )
    add_user(ctx)
    at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    ctx.store.set_state(
        LAST_BUILD_KEY,
        json.dumps(
            {
                "at": at,
                "trigger": "scheduled",
                "ok": False,
                "error": "BuildError: docs gone",
                "seconds": 1.5,
            }
        ),
    )

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        html = await (await client.get("/index")).text()
        assert manifest["version"] in html
        assert f"<dd>{manifest['documents']}</dd>" in html
        assert f"<dd>{manifest['chunks']}</dd>" in html
        assert manifest["model"] in html
        for name, info in manifest["sources"].items():
            assert f"<td>{name}</td>" in html and str(info["version"]) in html
        assert "docs_dir" in html and "include_keras_api" in html
        assert "ago" in html
        assert "failed" in html and "BuildError: docs gone" in html and "scheduled" in html
        assert "2 hours ago" in html
        assert "Rebuild now" in html and "disabled" not in html.split("Rebuild now")[0][-200:]
        refused = await client.post("/index/rebuild")
        assert refused.status == 403
        response = await client.post(
            "/index/rebuild", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/index?flash=rebuild-started"
        assert rebuilds == ["started"]
        assert "Rebuild started" in await (await client.get(response.headers["Location"])).text()

    serve(ctx, scenario)


def test_index_page_without_an_index_or_a_rebuild_job(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        html = await (await client.get("/index")).text()
        assert "No index is loaded" in html and "No rebuild recorded yet." in html
        assert "disabled" in html and "supportbot index build" in html
        response = await client.post("/index/rebuild", data={"csrf_token": csrf})
        assert response.status == 409

    serve(ctx, scenario)


def test_signed_in_pages_render(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$q", "how?")
    add_question(ctx.store, "$a/b", "a slashed id?")

    async def scenario(client: Client) -> None:
        await signed_in(client)
        for path in ("/queue", "/questions/%24q", "/try", "/index", "/insights"):
            response = await client.get(path)
            assert response.status == 200, path
            assert response.headers["Cache-Control"] == "no-store"
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
            html = await response.text()
            assert 'aria-current="page"' in html and "Sign out" in html
        # Signed out, a question link comes back to its question after signing in, even when
        # the event id holds a "/".
        await client.post("/logout", data={"csrf_token": csrf_in(html)})
        response = await client.get("/questions/%24a%2Fb", allow_redirects=False)
        assert response.status == 302
        [next_path] = parse_qs(urlsplit(response.headers["Location"]).query)["next"]
        assert next_path == "/questions/$a%2Fb"
        back = await login(client, next_path=next_path)
        assert back.status == 303
        page = await client.get(back.headers["Location"])
        assert page.status == 200 and "a slashed id?" in await page.text()

    serve(ctx, scenario)


# --- the service side: posting for real, and noticing answers in the room ------------------------
def service_in_local_room(
    tmp_path: Path,
    *,
    answer: LiveAnswerer | None = None,
    reindex: Callable[[], str | None] | None = None,
    **overrides: Any,
) -> tuple[RoomService, LocalRoom, Database]:
    settings = load_settings(
        data_dir=tmp_path,
        serve_http=False,
        reindex_schedule="off",
        index_watch_seconds=0,
        backoff_initial_seconds=0.001,
        backoff_max_seconds=0.002,
        **overrides,
    )
    db = Database(settings.resolved_database_url)
    db.create_schema()
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    room.ensure()

    def no_answers(text: str) -> Any:
        raise AssertionError("not asked")

    service = RoomService(
        settings,
        LocalTransport(room),
        RoomStore(db),
        answer or no_answers,
        index=answer,
        reindex=reindex,
    )
    return service, room, db


def test_post_from_dashboard_sends_once_in_the_thread_and_records_it(tmp_path: Path) -> None:
    service, room, db = service_in_local_room(tmp_path)
    asker = room.user_id_for("alice")
    question_id = room.post(asker, "how do I save a model?")
    [(_, raw)] = room.events_after(0, 10)
    from bot.chat.events import parse_event

    event = parse_event(room.room_id, raw)
    assert event is not None
    service.store.persist_batch([event], None)
    add_question(
        service.store, question_id, "how do I save a model?", sender=asker, room=room.room_id
    )
    try:
        reply_id = asyncio.run(
            service.dashboard.post(question_id, "Use **`model.save()`**.", "maria")
        )
        posted = [r for _, r in room.events_after(0, 10) if r["event_id"] == reply_id]
        assert len(posted) == 1
        content = posted[0]["content"]
        assert content["m.relates_to"]["rel_type"] == "m.thread"
        assert content["m.relates_to"]["event_id"] == question_id
        assert content["m.mentions"] == {"user_ids": [asker]}
        assert content["body"] == "Use **`model.save()`**."
        assert "<strong><code>model.save()</code></strong>" in content["formatted_body"]
        [post] = DashboardStore(db).posts(question_id)
        assert (post.state, post.posted_by, post.reply_event_id) == ("sent", "maria", reply_id)
        assert post.txn_id.startswith(f"supportbot-post-{post.id}-")
        question = service.store.question(question_id)
        assert question is not None
        assert (question.status, question.answered_by) == ("answered_person", "maria")
        assert question.answered_at is not None
        # The dashboard shows the post in the thread even before the room echoes it back.
        thread = DashboardStore(db).thread(question_id)
        assert [m.body for m in thread][-1] == "Use **`model.save()`**."
        # The maintainer's answer is learnt as a past answer, credited to them.
        pair = service.store.pair_for_question(question_id)
        assert pair is not None and pair.established_by == "dashboard-post"
        assert pair.answer_event_id == reply_id
        assert service.past_answers_changed.is_set()
        # A second post does not replace it (the first trusted answer stays).
        service.past_answers_changed.clear()
        asyncio.run(service.dashboard.post(question_id, "Or `keras.saving`.", "otto"))
        assert service.store.pair_for_question(question_id) == pair
        assert not service.past_answers_changed.is_set()
    finally:
        service.executor.shutdown()
        db.close()


def test_post_from_dashboard_retries_then_reports_a_clear_error(tmp_path: Path) -> None:
    service, room, db = service_in_local_room(tmp_path)
    question_id = room.post(room.user_id_for("alice"), "how?")
    add_question(service.store, question_id, "how?", room=room.room_id)
    sent: list[OutgoingReply] = []
    real_send = service.transport.send_reply

    async def flaky(reply: OutgoingReply) -> str:
        sent.append(reply)
        if len(sent) < 3:
            raise TransientError("connection reset")
        return await real_send(reply)

    service.transport.send_reply = flaky  # type: ignore[method-assign]
    try:
        reply_id = asyncio.run(service.dashboard.post(question_id, "third time", "maria"))
        assert len(sent) == 3 and len({r.txn_id for r in sent}) == 1  # one post, one txn id
        assert reply_id

        sent.clear()

        async def down(reply: OutgoingReply) -> str:
            sent.append(reply)
            raise TransientError("connection refused")

        service.transport.send_reply = down  # type: ignore[method-assign]
        with pytest.raises(TransientError, match="did not take the reply after 3 tries"):
            asyncio.run(service.dashboard.post(question_id, "never arrives", "otto"))
        states = [p.state for p in DashboardStore(db).posts(question_id)]
        assert states == ["sent", "failed"]
        with pytest.raises(LookupError):
            asyncio.run(service.dashboard.post("$unknown", "x", "otto"))
    finally:
        service.executor.shutdown()
        db.close()


def test_a_person_answering_in_the_thread_marks_the_question_answered(tmp_path: Path) -> None:
    service, _room, db = service_in_local_room(tmp_path, maintainers=[BOB])
    store = service.store
    add_question(store, "$q1", "how do I save?", sender=ALICE, ts=1000)
    add_question(store, "$q2", "how do I load?", sender=ALICE, ts=1001)
    add_question(store, "$q3", "dismissed one?", sender=ALICE, ts=1002, status="dismissed")
    events = [
        # The asker adding detail is not an answer.
        room_event(
            "$self", "more detail", sender=ALICE, rel_type="m.thread", relates_to="$q1", ts=2000
        ),
        room_event(
            "$ans1", "use model.save", sender=BOB, rel_type="m.thread", relates_to="$q1", ts=3000
        ),
        room_event("$ans2", "use load_model", sender=BOB, in_reply_to="$q2", ts=4000),
        room_event("$ans3", "ignored", sender=BOB, in_reply_to="$q3", ts=5000),
        # The bot's own messages never count.
        room_event(
            "$bot",
            "bot notice",
            sender=service.me.user_id,
            rel_type="m.thread",
            relates_to="$q2",
            ts=6000,
            msgtype="m.notice",
        ),
    ]
    store.persist_batch(events, None)

    async def handle_all() -> list[str | None]:
        return [await outcome_of(service, e) for e in events]

    try:
        asyncio.run(handle_all())
        q1, q2, q3 = (store.question(e) for e in ("$q1", "$q2", "$q3"))
        assert q1 is not None and q2 is not None and q3 is not None
        assert (q1.status, q1.answered_by) == ("answered_person", BOB)
        assert q1.answered_at == datetime.fromtimestamp(3, UTC)  # when they wrote it
        assert (q2.status, q2.answered_by) == ("answered_person", BOB)
        assert (q3.status, q3.answered_by) == ("dismissed", None)
    finally:
        service.executor.shutdown()
        db.close()


def test_only_a_trusted_reply_or_the_askers_acceptance_marks_a_question_answered(
    tmp_path: Path,
) -> None:
    maint, carol = "@maint:example.org", "@carol:example.org"
    service, _room, db = service_in_local_room(tmp_path, maintainers=[maint])
    store = service.store
    add_question(store, "$q1", "how do I save?", sender=ALICE, ts=1000)
    add_question(store, "$q2", "how do I load?", sender=ALICE, ts=1001)

    def reaction(event_id: str, sender: str, target: str, ts: int) -> RoomEvent:
        return RoomEvent(
            ROOM, event_id, sender, ts, "m.reaction", None, "✅",
            rel_type="m.annotation", relates_to=target,
        )  # fmt: skip

    events = [
        # "+1" and "same here" from other people answer nothing.
        room_event("$plus", "+1", sender=BOB, rel_type="m.thread", relates_to="$q1", ts=2000),
        room_event("$same", "same here", sender=carol, in_reply_to="$q1", ts=2500),
        # Someone else's ✅ on a reply is not the asker's acceptance.
        reaction("$r1", carol, "$plus", 2600),
        # A maintainer's reply counts.
        room_event(
            "$m", "model.save", sender=maint, rel_type="m.thread", relates_to="$q1", ts=3000
        ),
        # Bob's reply to q2 counts once the asker accepts it.
        room_event(
            "$ans", "load_model", sender=BOB, rel_type="m.thread", relates_to="$q2", ts=4000
        ),
        reaction("$r2", ALICE, "$ans", 5000),
    ]
    store.persist_batch(events, None)

    async def handle(batch: list[RoomEvent]) -> None:
        for event in batch:
            await outcome_of(service, event)

    try:
        asyncio.run(handle(events[:3]))
        q1, q2 = store.question("$q1"), store.question("$q2")
        assert q1 is not None and q2 is not None
        assert (q1.status, q1.answered_by) == ("suggested", None)
        asyncio.run(handle(events[3:5]))
        q1, q2 = store.question("$q1"), store.question("$q2")
        assert q1 is not None and q2 is not None
        assert (q1.status, q1.answered_by) == ("answered_person", maint)
        assert (q2.status, q2.answered_by) == ("suggested", None)
        asyncio.run(handle(events[5:]))
        q2 = store.question("$q2")
        assert q2 is not None and (q2.status, q2.answered_by) == ("answered_person", BOB)
        assert q2.answered_at == datetime.fromtimestamp(5, UTC)  # when the asker accepted
    finally:
        service.executor.shutdown()
        db.close()


def test_a_redaction_blanks_a_message_only_from_its_sender_or_a_moderator(
    tmp_path: Path,
) -> None:
    mod, carol = "@mod:example.org", "@carol:example.org"
    service, _room, db = service_in_local_room(tmp_path)
    service.transport.power_levels[ROOM] = PowerLevels(users={mod: 50})
    store = service.store
    add_question(store, "$q1", "how do I save?", sender=ALICE, ts=1000)

    def reply(event_id: str, body: str, sender: str, ts: int) -> RoomEvent:
        return room_event(
            event_id, body, sender=sender, rel_type="m.thread", relates_to="$q1", ts=ts
        )

    def redaction(event_id: str, sender: str, target: str, ts: int) -> RoomEvent:
        return RoomEvent(
            ROOM, event_id, sender, ts, "m.room.redaction", None, "", relates_to=target
        )

    events = [
        reply("$r1", "use model.save", BOB, 2000),
        reply("$r2", "or pickle it", carol, 2100),
        reply("$r3", "buy followers here", carol, 2200),
        redaction("$x1", carol, "$r1", 3000),  # someone else's message: the server ignores it
        redaction("$x2", carol, "$r2", 3100),  # their own
        redaction("$x3", mod, "$r3", 3200),  # a moderator's
    ]
    store.persist_batch(events, None)

    async def handle_all() -> None:
        for event in events:
            store.mark_handled(event.event_id, await outcome_of(service, event) or "")

    try:
        asyncio.run(handle_all())
        shown = {m.event_id: m for m in DashboardStore(db).thread("$q1")}
        assert (shown["$r1"].body, shown["$r1"].deleted) == ("use model.save", False)
        assert (shown["$r2"].body, shown["$r2"].deleted) == ("", True)
        assert (shown["$r3"].body, shown["$r3"].deleted) == ("", True)
    finally:
        service.executor.shutdown()
        db.close()


def test_the_bots_confident_reply_is_recorded_as_answered_by_the_bot(tmp_path: Path) -> None:
    service, room, db = service_in_local_room(tmp_path)
    question_id = room.post(room.user_id_for("alice"), "how?")
    event = room_event(question_id, "how?", room=room.room_id, sender=room.user_id_for("alice"))
    add_question(
        service.store, question_id, "how?", room=room.room_id, sender=room.user_id_for("alice")
    )
    try:
        outcome = code_of(asyncio.run(service.handler.reply(event, "an answer", confident=True)))
        assert outcome == "replied"
        question = service.store.question(question_id)
        assert question is not None
        assert (question.status, question.answered_by) == ("answered_bot", "bot")
        assert question.answered_at is not None
        # A maintainer's later post takes it over (answered by a person now).
        asyncio.run(service.dashboard.post(question_id, "more detail", "maria"))
        question = service.store.question(question_id)
        assert question is not None
        assert (question.status, question.answered_by) == ("answered_person", "maria")
    finally:
        service.executor.shutdown()
        db.close()


def test_web_context_from_the_service(tmp_path: Path, answerer: LiveAnswerer) -> None:
    builds: list[str] = []

    def reindex() -> str | None:
        builds.append("built")
        return None

    service, room, db = service_in_local_room(tmp_path, answer=answerer, reindex=reindex)
    try:
        ctx = context_for(service.dashboard, local_room=room)
        assert ctx.local_room is not None and ctx.post_reply is not None
        assert ctx.index_manifest is not None
        assert ctx.index_manifest()["version"] == answerer.version
        assert ctx.encode is not None and ctx.encode(["hello"]).shape == (1, 384)
        assert ctx.run_cpu is not None and ctx.rebuild is not None

        async def go() -> None:
            assert ctx.run_cpu is not None and ctx.rebuild is not None
            reply = await ctx.run_cpu(lambda: answerer(QUESTION))
            assert reply.sources
            await ctx.rebuild()
            task = service.jobs.dashboard_build
            assert task is not None
            await ctx.rebuild()  # still running: not started twice
            assert service.jobs.dashboard_build is task
            await task

        asyncio.run(go())
        assert builds == ["built"]
        record = json.loads(service.store.get_state(LAST_BUILD_KEY) or "{}")
        assert record["trigger"] == "dashboard" and record["ok"] is True
    finally:
        service.executor.shutdown()
        db.close()


def test_thread_of_a_lone_question(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    store = DashboardStore(ctx.db)
    add_question(ctx.store, "$q", "how?")
    try:
        assert [(m.event_id, m.is_question) for m in store.thread("$q")] == [("$q", True)]
        assert store.thread("$missing") == []
    finally:
        ctx.db.close()


EXTREME_TS = 2**53 - 1


def test_an_extreme_origin_ts_is_replaced_by_the_receive_time_when_parsed(
    tmp_path: Path, database_url: str
) -> None:
    """A federated server's ts of 2^53-1 goes through parse -> store -> the queue and the
    question page, and can be dismissed."""
    from bot.chat.events import parse_event

    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    raw = {
        "type": "m.room.message",
        "event_id": "$far",
        "sender": ALICE,
        "origin_server_ts": EXTREME_TS,
        "content": {"msgtype": "m.text", "body": "from the far future?"},
    }
    before = int(datetime.now(UTC).timestamp() * 1000)
    event = parse_event(ROOM, raw)
    after = int(datetime.now(UTC).timestamp() * 1000)
    assert event is not None and before <= event.origin_ts <= after
    ctx.store.persist_batch([event], None)
    ctx.store.save_question(
        event,
        event.body,
        mentioned=True,
        confidence=0.2,
        suggestion=None,
        sources=[],
        index_version="v-test",
        status="new",
    )

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        assert row_ids(await (await client.get("/queue")).text()) == ["$far"]
        assert (await client.get("/questions/%24far")).status == 200
        gone = await client.post(
            "/questions/%24far/dismiss", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert gone.status == 303

    serve(ctx, scenario)
    assert question_row(ctx, "$far").status == "dismissed"


@pytest.mark.parametrize("ts", [EXTREME_TS, 2**63 - 1, -(2**53), -1])
def test_stored_extreme_timestamps_do_not_break_any_page(
    tmp_path: Path, ts: int, database_url: str
) -> None:
    """Rows stored before parsing checked timestamps (or by another tool) still render: every
    ms -> datetime conversion is total."""
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$x", "when was this?", ts=ts)
    reply = room_event("$r", "like this", sender=BOB, ts=ts, rel_type="m.thread", relates_to="$x")
    ctx.store.persist_batch([reply], None)

    async def scenario(client: Client) -> None:
        csrf = await signed_in(client)
        assert (await client.get("/queue")).status == 200
        assert (await client.get("/queue?status=all")).status == 200
        assert (await client.get("/questions/%24x")).status == 200
        assert (await client.get("/insights")).status == 200
        gone = await client.post(
            "/questions/%24x/dismiss", data={"csrf_token": csrf}, allow_redirects=False
        )
        assert gone.status == 303

    serve(ctx, scenario)
    assert question_row(ctx, "$x").status == "dismissed"
