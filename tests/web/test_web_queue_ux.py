"""The queue and the question page as a maintainer reads them (issue 13, item 5).

Pure parts first: the one status mapping (triage status + the bot's recorded outcome), the
confidence's "why", short Matrix ids, past questions' titles, bare URLs as links and excerpts
that keep code. Then the pages: questions decided by the real ``RoomService`` in the local
room (its real outcomes and statuses) shown on the queue, and the question page's editor,
links and past-answer excerpts on the aiohttp test server over a real database.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from bot.answering.reply import SuggestedReply, compose_reply
from bot.chat.events import RoomEvent
from bot.chat.local_transport import LocalTransport
from bot.corpus.past_answers import PastAnswer, strip_leading_mentions, title_of
from bot.retrieval.search import Hit, SearchResult
from bot.room.service import RoomService
from bot.settings import load_settings
from bot.store.dashboard_store import QueueItem
from bot.store.database import Database
from bot.store.local_room import LocalRoom
from bot.store.models import QuestionRow, RoomEventRow
from bot.store.past_answers import PastAnswerStore, upsert_in
from bot.store.room_store import RoomStore
from bot.web.formatting import question_url
from bot.web.queue_view import (
    UNSURE_LEADS,
    QueueStatus,
    clean_title,
    confidence_why,
    is_confident,
    is_unsure_text,
    queue_row,
    queue_status,
    short_id,
)
from bot.web.text_html import blocks, excerpt_html, linkify
from tests.web.web_helpers import (
    ALICE,
    BOB,
    ROOM,
    add_question,
    add_user,
    make_context,
    room_event,
    serve,
    signed_in,
)

Client = TestClient[Any, Any]
XSS = "<img src=x onerror=alert(1)>"
UNSURE = "I'm not sure the docs answer this; these are the closest pages I found:\n\n1. [x](y)"


# --- the status mapping --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "outcome", "confident", "bot_replied", "key", "label"),
    [
        # What the bot did in the room.
        ("answered_bot", "replied", True, True, "replied", "Replied"),
        ("new", "replied:unsure", False, True, "replied_unsure", "Replied unsure"),
        # Re-handled after a restart: the reply that went out still says what happened.
        ("new", "already-replied", False, True, "replied_unsure", "Replied unsure"),
        # Skipped, and why.
        ("suggested", "suppressed:user-cooldown", False, False, "skipped", "Skipped: cooldown"),
        ("new", "suppressed:room-rate-limit:x", False, False, "skipped", "Skipped: room busy"),
        ("suggested", "triage", False, False, "skipped", "Skipped: not mentioned"),
        (
            "suggested",
            "triage:low-confidence",
            False,
            False,
            "skipped",
            "Skipped: below threshold",
        ),
        ("suggested", "history", False, False, "skipped", "Skipped: old message"),
        ("suggested", "not-a-question", False, False, "skipped", "Skipped: not a question"),
        ("new", "notice:too-many-waiting", False, False, "skipped", "Skipped: too many waiting"),
        ("new", "something-new", False, False, "skipped", "Skipped"),
        # A confident suggestion nobody has seen in the room yet, whatever held it back.
        ("suggested", "triage", True, False, "suggestion_ready", "Suggestion ready"),
        (
            "suggested",
            "suppressed:user-cooldown",
            True,
            False,
            "suggestion_ready",
            "Suggestion ready",
        ),
        ("suggested", None, True, False, "suggestion_ready", "Suggestion ready"),
        # Waiting for the rate limits, failed, not decided yet.
        ("suggested", "deferred:user-cooldown:1", True, False, "waiting", "Waiting: cooldown"),
        ("new", "error:ValueError", False, False, "failed", "Failed"),
        ("new", None, False, False, "new", "New"),
        # What people did.
        ("dismissed", "replied:unsure", False, True, "dismissed", "Dismissed"),
        ("answered_person", "replied:unsure", False, True, "answered_person", "Answered by bob"),
    ],
)
def test_the_status_says_what_happened(
    status: str, outcome: str | None, confident: bool, bot_replied: bool, key: str, label: str
) -> None:
    found = queue_status(
        status=status,
        outcome=outcome,
        confident=confident,
        bot_replied=bot_replied,
        answered_by=BOB,
        handled_by="maria",
    )
    assert (found.key, found.label) == (key, label)
    assert found.detail and "_" not in found.detail  # a sentence, not a code


def test_a_skipped_confident_suggestion_says_why_it_was_not_posted() -> None:
    found = queue_status(
        status="suggested", outcome="suppressed:user-cooldown", confident=True, bot_replied=False
    )
    assert found.detail == "not posted: the asker had a reply from the bot moments before"
    dismissed = queue_status(
        status="dismissed", outcome=None, confident=False, bot_replied=False, handled_by="maria"
    )
    assert dismissed == QueueStatus("dismissed", "Dismissed", "dismissed by maria on the dashboard")


def test_only_a_confident_suggestion_is_confident() -> None:
    text = "This looks covered by **EarlyStopping**: ..."
    assert is_confident(confidence=0.75, threshold=0.75, suggestion=text)
    assert not is_confident(confidence=0.74, threshold=0.75, suggestion=text)
    assert not is_confident(confidence=None, threshold=0.75, suggestion=text)
    assert not is_confident(confidence=0.9, threshold=0.75, suggestion=None)
    # The unsure text never is, even above a threshold lowered since.
    assert not is_confident(confidence=0.9, threshold=0.5, suggestion=UNSURE)
    # A confident reply went out below the number (a Keras 3 note answering an error).
    note = "This error comes from a change in Keras 3:"
    assert is_confident(confidence=0.3, threshold=0.75, suggestion=note, outcome="replied")
    assert is_confident(confidence=0.3, threshold=0.75, suggestion=note, status="answered_bot")


def _hit(title: str, score: float, kind: str = "api") -> Hit:
    return Hit(
        doc_id=f"doc:{title}",
        title=title,
        url=f"https://keras.io/api/{title.lower()}/",
        kind=kind,
        score=score,
        dense=None,
        lexical=None,
        symbol=None,
        dense_rank=1,
        lexical_rank=1,
        section="",
        excerpt=f"{title}\nStop training when a monitored metric has stopped improving.",
    )


def _reply(
    question: str, confidence: float, *, hits: bool = True, top: str = "EarlyStopping"
) -> SuggestedReply:
    result = SearchResult(
        query=question,
        mode="hybrid",
        hits=[_hit(top, 0.9), _hit("ModelCheckpoint", 0.6)] if hits else [],
        confidence=confidence,
        symbols=[],
    )
    return compose_reply(result, threshold=0.75, snippet=False)


def test_the_unsure_leads_are_the_ones_compose_reply_writes() -> None:
    """If reply.py rewords its unsure lead, the editor must still start empty: this fails."""
    assert is_unsure_text(_reply("how do I stop early?", 0.3).markdown)
    assert is_unsure_text(_reply("how do I stop early?", 0.3, hits=False).markdown)
    assert not is_unsure_text(_reply("how do I stop early?", 0.9).markdown)
    assert all(lead[0].isupper() for lead in UNSURE_LEADS)


def test_the_confidence_why() -> None:
    def why(confidence: float | None, **kw: Any) -> str:
        return confidence_why(confidence=confidence, threshold=0.75, **kw)

    assert why(0.82, found=True, top_title="EarlyStopping") == "top page: EarlyStopping"
    assert (
        why(0.9, found=True, top_title="@supportbot: how to freeze layers?", top_kind="thread")
        == "answered before: how to freeze layers?"
    )
    assert why(0.54, found=True, top_title="EarlyStopping") == "unsure: below 75%"
    assert why(0.1, found=False) == "nothing found"
    assert why(None, found=False) == "not scored"


def make_item(**changes: Any) -> QueueItem:
    values: dict[str, Any] = {
        "event_id": "$q",
        "room_id": ROOM,
        "asker": ALICE,
        "text": "how?",
        "confidence": 0.82,
        "status": "suggested",
        "mentioned": False,
        "created_at": datetime(2026, 11, 30),
        "asked_at": None,
        "outcome": "triage",
        "suggestion": "This looks covered by **EarlyStopping**:",
        "top_title": "EarlyStopping",
        "top_kind": "api",
    }
    values.update(changes)
    return QueueItem(**values)


def test_a_queue_row_from_a_stored_item() -> None:
    row = queue_row(make_item(), 0.75)
    assert (row.status.label, row.why) == ("Suggestion ready", "top page: EarlyStopping")
    unsure = queue_row(
        make_item(confidence=0.4, status="new", outcome="replied:unsure", reply_state="sent"), 0.75
    )
    assert (unsure.status.label, unsure.why) == ("Replied unsure", "unsure: below 75%")
    # The same row when the threshold is lowered: its text still says it was unsure.
    lowered = queue_row(make_item(confidence=0.6, suggestion=UNSURE, outcome="triage"), 0.5)
    assert lowered.status.label == "Skipped: not mentioned"


# --- ids and titles ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("matrix_id", "short"),
    [
        ("@alice:example.org", "alice"),
        ("@carol.smith=2f:matrix.org:8448", "carol.smith=2f"),
        ("!keras:example.org", "!keras"),
        ("#keras:matrix.org", "#keras"),
        ("!OpaqueRoomIdWithoutServer", "!OpaqueRoomIdWithoutServer"),  # room version 12
        ("@:example.org", "@:example.org"),
        ("maria", "maria"),  # a dashboard user
        ("", ""),
        (None, ""),
    ],
)
def test_short_ids(matrix_id: str | None, short: str) -> None:
    assert short_id(matrix_id) == short


@pytest.mark.parametrize(
    ("title", "clean"),
    [
        ("@supportbot how do I freeze layers?", "how do I freeze layers?"),
        ("@supportbot: how do I freeze layers?", "how do I freeze layers?"),
        ("@supportbot:matrix.org, how do I freeze layers?", "how do I freeze layers?"),
        ("@supportbot:matrix.org:8448 @alice why?", "why?"),
        ("supportbot: how do I freeze layers?", "how do I freeze layers?"),  # the name form
        ("Why does @supportbot say that?", "Why does @supportbot say that?"),  # not leading
        ("supportbotics: a field", "supportbotics: a field"),
        ("@supportbot", "@supportbot"),  # nothing but the mention: kept
        ("  how   do I\nfreeze?  ", "how do I freeze?"),
    ],
)
def test_past_question_titles_drop_the_leading_mention(title: str, clean: str) -> None:
    assert clean_title(title, ("supportbot",)) == clean


def test_a_past_answers_document_title_drops_the_leading_mention() -> None:
    pair = PastAnswer(
        key="thread:$q", question="@supportbot: how do I freeze layers?\nmore", answer="a", url=""
    )
    assert title_of(pair) == "how do I freeze layers?"
    assert strip_leading_mentions("@bot") == "@bot"
    given = PastAnswer(key="k", question="q", answer="a", url="", title="@bot keeps it")
    assert title_of(given) == "@bot keeps it"  # a title someone chose is theirs


# --- links and code ------------------------------------------------------------------------------
NOFOLLOW = 'rel="nofollow noopener"'


@pytest.mark.parametrize(
    ("text", "html"),
    [
        (
            "see https://keras.io/api/ for more",
            f'see <a href="https://keras.io/api/" {NOFOLLOW}>https://keras.io/api/</a> for more',
        ),
        (
            "Docs: http://keras.io/a_b?x=1&y=2.",
            f'Docs: <a href="http://keras.io/a_b?x=1&amp;y=2" {NOFOLLOW}>'
            "http://keras.io/a_b?x=1&amp;y=2</a>.",
        ),
        (
            "(see https://en.wikipedia.org/wiki/Dropout_(neural_networks))",
            f'(see <a href="https://en.wikipedia.org/wiki/Dropout_(neural_networks)" {NOFOLLOW}>'
            "https://en.wikipedia.org/wiki/Dropout_(neural_networks)</a>)",
        ),
        # Quotes and angle brackets end a URL: nothing breaks out of the attribute.
        (
            'https://evil.example/"onmouseover="alert(1)',
            f'<a href="https://evil.example/" {NOFOLLOW}>https://evil.example/</a>'
            "&#34;onmouseover=&#34;alert(1)",
        ),
        (
            "https://x.org/<script>alert(1)</script>",
            f'<a href="https://x.org/" {NOFOLLOW}>https://x.org/</a>'
            "&lt;script&gt;alert(1)&lt;/script&gt;",
        ),
        # Only http(s), only at a word's start, only with a host.
        ("javascript:alert(1) ftp://x.org", "javascript:alert(1) ftp://x.org"),
        ("xhttps://keras.io and https:// alone", "xhttps://keras.io and https:// alone"),
        ("https://.../", "https://.../"),
        (XSS, "&lt;img src=x onerror=alert(1)&gt;"),
    ],
)
def test_bare_urls_become_escaped_links(text: str, html: str) -> None:
    assert str(linkify(text)) == html


def test_excerpts_keep_code_blocks_escaped() -> None:
    answer = (
        "Freeze it before compiling, see https://keras.io/guides/transfer_learning/:\n\n"
        "```python\nbase.trainable = False  # <b>not bold</b>\nmodel.compile()\n```\n\n"
        "Then fit <again>."
    )
    assert [b.code for b in blocks(answer)] == [False, True, False]
    html = str(excerpt_html(answer))
    assert (
        "<pre><code>base.trainable = False  # &lt;b&gt;not bold&lt;/b&gt;\nmodel.compile()"
        "</code></pre>"
    ) in html
    assert f'<a href="https://keras.io/guides/transfer_learning/" {NOFOLLOW}>' in html
    assert "<p>Then fit &lt;again&gt;.</p>" in html
    # Cut at a whole line of code, never inside one; an unclosed fence runs to the end.
    long = "Try:\n```\n" + "\n".join(f"line_{n} = {n}" for n in range(100))
    cut = str(excerpt_html(long, limit=60))
    assert "<pre><code>line_0 = 0\n" in cut and "\n…</code></pre>" in cut
    assert all(
        re.fullmatch(r"line_\d+ = \d+|…", line)
        for line in cut.split("<code>")[1].split("</code>")[0].splitlines()
    )
    assert str(excerpt_html("")) == ""


# --- the pages, with decisions the real service made ---------------------------------------------
def answers(confidences: dict[str, float | tuple[float, str]]) -> Any:
    """An answerer for the service: the real compose_reply on hits made up per question
    (text -> confidence, or (confidence, the top page's title))."""

    def answer(text: str) -> SuggestedReply:
        found = confidences[text]
        confidence, top = found if isinstance(found, tuple) else (found, "EarlyStopping")
        return _reply(text, confidence, top=top)

    return answer


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[RoomService, LocalRoom]]:
    settings = load_settings(
        data_dir=tmp_path,
        serve_http=False,
        reindex_schedule="off",
        index_watch_seconds=0,
        reply_to_unmentioned=True,
    )
    db = Database(settings.resolved_database_url)
    db.create_schema()
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    room.ensure()
    service = RoomService(settings, LocalTransport(room), RoomStore(db), answers({}))
    try:
        yield service, room
    finally:
        service.executor.shutdown()
        db.close()


def ask(service: RoomService, room: LocalRoom, name: str, body: str, ts: int) -> str:
    """Post in the local room, store the event as the sync would, and let the service decide
    on it as its answer loop does (outcome recorded on the event)."""
    sender = room.user_id_for(name)
    event_id = room.post(sender, body)
    event = RoomEvent(
        room_id=room.room_id,
        event_id=event_id,
        sender=sender,
        origin_ts=ts,
        event_type="m.room.message",
        msgtype="m.text",
        body=body,
    )
    service.store.persist_batch([event], None)
    outcome = asyncio.run(service.handler.handle(event))
    assert outcome is not None
    service.store.mark_handled(event_id, outcome.code)
    return event_id


def test_the_queue_says_what_the_bot_did_with_each_question(
    tmp_path: Path, service: tuple[RoomService, LocalRoom]
) -> None:
    bot, room = service
    bot.handler.answer = answers(
        {
            "how do I stop training early?": 0.4,
            "How do I freeze layers?": 0.9,
            "Why is my loss nan?": 0.3,
            "How do I save a model?": 0.88,
        }
    )
    base = 1_700_000_000_000
    unsure = ask(bot, room, "alice", "@supportbot how do I stop training early?", base)
    replied = ask(bot, room, "bob", "How do I freeze layers?", base + 1)
    low = ask(bot, room, "carol", "Why is my loss nan?", base + 2)
    # bob again, within his cooldown: confident, but held back.
    held = ask(bot, room, "bob", "How do I save a model?", base + 3)
    with bot.store.db.session() as s:
        outcomes = dict(
            s.execute(
                select(RoomEventRow.event_id, RoomEventRow.outcome).where(
                    RoomEventRow.event_id.in_([unsure, replied, low, held])
                )
            ).all()
        )
    # The service's own decisions, as it records them.
    assert outcomes == {
        unsure: "replied:unsure",
        replied: "replied",
        low: "triage:low-confidence",
        held: "suppressed:user-cooldown",
    }
    ctx = make_context(tmp_path, bot.settings.resolved_database_url)
    add_user(ctx)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/queue")).text()
        rows = queue_rows(html)
        assert list(rows) == [held, low, unsure]  # open: the confident reply is done
        assert status_of(rows[unsure]) == "Replied unsure"
        assert status_of(rows[low]) == "Skipped: below threshold"
        assert status_of(rows[held]) == "Suggestion ready"
        assert "not posted: the asker had a reply from the bot moments before" in rows[held]
        assert '<span class="why">top page: EarlyStopping</span>' in rows[held]
        assert '<span class="pct">88%</span>' in rows[held]
        threshold = f"{bot.settings.reply_threshold:.0%}"  # the default, whatever it is now
        assert f'<span class="why">unsure: below {threshold}</span>' in rows[low]
        # Short ids, the full one in the title; never the full id as the cell's text.
        alice, local = room.user_id_for("alice"), room.room_id
        assert f'<span class="id" title="{alice}">alice</span>' in rows[unsure]
        assert f'<span class="id" title="{local}">!local</span>' in rows[unsure]
        assert f">{alice}<" not in html and f">{local}<" not in html.split("<table")[1]
        answered = queue_rows(await (await client.get("/queue?status=answered")).text())
        assert list(answered) == [replied] and status_of(answered[replied]) == "Replied"
        # The updates endpoint renders the same rows.
        late = await client.get("/queue/updates?status=all&after=2000-01-01T00:00:00%2B00:00")
        items = {i["event_id"]: i["html"] for i in (await late.json())["items"]}
        assert status_of(items[unsure]) == "Replied unsure"

        # The unsure one: the editor starts empty, the suggestion is there to copy from.
        page = await (await client.get(question_url(unsure))).text()
        assert editor_text(page) == ""
        reference = re.search(r'<textarea id="reference"[^>]*readonly>([^<]*)</textarea>', page)
        assert reference and reference.group(1).startswith("I&#39;m not sure the docs")
        assert "Replied unsure" in page
        # The confident one the limits held back: prefilled, nothing to copy from.
        page = await (await client.get(question_url(held))).text()
        assert editor_text(page).startswith("This looks covered by **EarlyStopping**")
        assert 'id="reference"' not in page

    serve(ctx, scenario)


def queue_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-event-id="([^"]+)">(.*?)</tr>', html, re.S))


def status_of(row: str) -> str:
    found = re.search(r'<span class="status status-[a-z_]+" title="[^"]*">([^<]*)</span>', row)
    assert found, row
    return found.group(1)


def editor_text(html: str) -> str:
    found = re.search(r'<textarea id="reply-body" name="body"[^>]*>([^<]*)</textarea>', html)
    assert found
    return found.group(1)


def test_the_question_page_links_urls_and_shows_past_answers_with_their_code(
    tmp_path: Path, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$q", "how do I freeze layers? see https://keras.io/guides/ " + XSS)
    ctx.store.persist_batch(
        [
            room_event(
                "$r",
                "Read https://keras.io/guides/transfer_learning/. Not javascript:alert(1) "
                'nor https://evil.example/"onmouseover="alert(1)',
                sender=BOB,
                rel_type="m.thread",
                relates_to="$q",
                ts=1_700_000_000_001,
            )
        ],
        None,
    )
    PastAnswerStore(ctx.db).upsert(
        PastAnswer(
            key="thread:$old",
            question="@supportbot how do I freeze layers?",
            answer="Set it before compile:\n\n```python\nbase.trainable = False  # <b>\n```",
            url="https://matrix.to/#/!keras:example.org/$old",
            answered_by=BOB,
        )
    )
    past_source = {
        "doc_id": "thread:$old",
        "title": "@supportbot how do I freeze layers?",
        "url": "https://matrix.to/#/!keras:example.org/$old",
        "section": "",
        "excerpt": "Set it before compile:",
        "score": 0.033,
        "kind": "thread",
        "answered_by": BOB,
    }
    with ctx.db.session() as s:
        s.execute(
            update(QuestionRow).where(QuestionRow.event_id == "$q").values(sources=[past_source])
        )

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/questions/%24q")).text()
        assert XSS not in html and 'href="javascript:' not in html
        assert (
            '<a href="https://keras.io/guides/transfer_learning/" rel="nofollow noopener">'
            "https://keras.io/guides/transfer_learning/</a>. Not javascript:alert(1)"
        ) in html
        assert '<a href="https://keras.io/guides/" rel="nofollow noopener">' in html
        assert (
            '<a href="https://evil.example/" rel="nofollow noopener">https://evil.example/</a>'
            "&#34;onmouseover=&#34;alert(1)"
        ) in html
        # The past answer: its title without the mention, its code as code, escaped.
        assert ">how do I freeze layers?</a>" in html
        assert "@supportbot how do I freeze layers?</a>" not in html
        assert "<pre><code>base.trainable = False  # &lt;b&gt;</code></pre>" in html
        assert "best match" in html and "0.033" not in html.replace("score 0.033", "")
        # Senders by their short name, the full id in the title.
        assert f'<strong class="id" title="{BOB}">bob</strong>' in html

    serve(ctx, scenario)


def test_the_past_answers_review_links_urls(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    with ctx.db.session() as s:  # as an asker's reaction proposes it: pending a review
        upsert_in(
            s,
            PastAnswer(
                key="thread:$p",
                question="Why does fit() hang? " + XSS,
                answer="See https://keras.io/api/models/model_training_apis/ " + XSS,
                url="https://matrix.to/#/!keras:example.org/$p",
                asked_by=ALICE,
                answered_by=BOB,
                established_by="accepted-reaction",
            ),
            review="pending",
        )

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/past-answers")).text()
        assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        assert (
            '<a href="https://keras.io/api/models/model_training_apis/" rel="nofollow noopener">'
        ) in html

    serve(ctx, scenario)
