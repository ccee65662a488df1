"""First-time askers on the dashboard (issue 13, item 2): the queue's "first question" badge
and its asker filter, the question page's badge, never for the bot or a maintainer, with
user text escaped; over a real database (SQLite and PostgreSQL) on the aiohttp test server."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from bot.web.dashboard import BadQuery, parse_queue_query
from bot.web.formatting import question_url
from tests.web.web_helpers import (
    ALICE,
    BOB,
    OTHER_ROOM,
    ROOM,
    add_question,
    add_user,
    make_context,
    room_event,
    serve,
    signed_in,
)

Client = TestClient[Any, Any]
T0 = 1_700_000_000_000
MARIA = "@maria:example.org"  # a configured maintainer
BOT = "@supportbot:supportbot.localhost"  # the local room's bot (the default)
CAROL = "@carol:example.org"
BADGE = re.compile(r'<span class="tag tag-first-question" title="([^"]*)">first question</span>')


def rows(html: str) -> dict[str, str]:
    """Each queue row's HTML by its question's event id."""
    found = re.findall(r'<tr data-event-id="([^"]+)">(.*?)</tr>', html, flags=re.S)
    return dict(found)


def marked(html: str) -> set[str]:
    return {event_id for event_id, row in rows(html).items() if BADGE.search(row)}


def test_the_asker_filter_is_parsed_and_kept_in_links() -> None:
    query = parse_queue_query({"asker": "new", "status": "all"})
    assert (query.filters.asker, query.asker) == ("new", "new")
    assert query.link(page=2) == "/queue?status=all&asker=new&page=2"
    assert parse_queue_query({}).filters.asker is None
    assert parse_queue_query({"asker": ""}).link() == "/queue"
    with pytest.raises(BadQuery, match="asker must be one of new, returning"):
        parse_queue_query({"asker": "old"})


def test_the_queue_marks_first_questions_and_filters_them(
    tmp_path: Path, database_url: str
) -> None:
    ctx = make_context(tmp_path, database_url, settings={"maintainers": [MARIA]})
    add_user(ctx)
    store = ctx.store
    # Bob said hello in the room before the bot ever ran: read on join, as history.
    hello = replace(room_event("$hello", "hi all", sender=BOB, ts=T0), origin="history")
    store.persist_batch([hello], None)
    # Carol has talked, but only in another room.
    store.persist_batch([room_event("$tf", "hi", sender=CAROL, room=OTHER_ROOM, ts=T0)], None)
    add_question(store, "$a1", "how do I stop training early?", sender=ALICE, ts=T0 + 1_000)
    add_question(store, "$b1", "why is my loss nan?", sender=BOB, ts=T0 + 2_000)
    add_question(store, "$a2", "and how do I restore the best weights?", ts=T0 + 3_000)
    add_question(store, "$c1", "does fit() shuffle?", sender=CAROL, ts=T0 + 4_000)
    add_question(store, "$m1", "can someone check the docs build?", sender=MARIA, ts=T0 + 5_000)
    add_question(store, "$bot", "a question the bot asked itself", sender=BOT, ts=T0 + 6_000)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        page = await client.get("/queue")
        html = await page.text()
        assert set(rows(html)) == {"$a1", "$b1", "$a2", "$c1", "$m1", "$bot"}
        # Alice's first question, not her second; Bob's hello counts; Carol's other room
        # does not; the maintainer and the bot never.
        assert marked(html) == {"$a1", "$c1"}
        title = BADGE.search(rows(html)["$a1"])
        assert title and title.group(1).startswith("alice had not posted in this room before")
        # The filter sits with the others, offering everyone, first questions, the others.
        assert '<select id="f-asker" name="asker">' in html
        assert '<option value="new" >First question</option>' in html

        new = await (await client.get("/queue?asker=new")).text()
        assert set(rows(new)) == marked(new) == {"$a1", "$c1"}
        assert '<option value="new" selected>First question</option>' in new
        assert "2 questions." in new
        returning = await (await client.get("/queue?asker=returning")).text()
        assert set(rows(returning)) == {"$b1", "$a2", "$m1", "$bot"}
        assert marked(returning) == set()
        # With the room filter: in the other room nobody asked.
        other = await (await client.get(f"/queue?asker=new&room={quote(OTHER_ROOM)}")).text()
        assert rows(other) == {}
        bad = await client.get("/queue?asker=veteran")
        assert bad.status == 400
        assert "asker must be one of new, returning" in await bad.text()

        # The question page says it too, by the heading.
        first = await (await client.get(question_url("$a1"))).text()
        heading = re.search(r"<h1>(.*?)</h1>", first, flags=re.S)
        assert heading and BADGE.search(heading.group(1))
        second = await (await client.get(question_url("$a2"))).text()
        assert not BADGE.search(second)
        maintainer = await (await client.get(question_url("$m1"))).text()
        assert not BADGE.search(maintainer)

    serve(ctx, scenario)


def test_live_rows_carry_the_badge_and_follow_the_filter(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    add_question(ctx.store, "$a1", "first?", sender=ALICE, ts=T0)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        html = await (await client.get("/queue?asker=new")).text()
        after = re.search(r'data-after="([^"]+)"', html)
        assert after
        assert 'data-updates-url="/queue/updates?asker=new"' in html
        add_question(ctx.store, "$a2", "second?", sender=ALICE, ts=T0 + 1_000)
        add_question(ctx.store, "$b1", "bob's first?", sender=BOB, ts=T0 + 2_000)
        since = quote(after.group(1))
        new = await (await client.get(f"/queue/updates?asker=new&after={since}")).json()
        assert [i["event_id"] for i in new["items"]] == ["$b1"]
        assert BADGE.search(new["items"][0]["html"])
        everyone = await (await client.get(f"/queue/updates?after={since}")).json()
        assert [i["event_id"] for i in everyone["items"]] == ["$b1", "$a2"]
        assert not BADGE.search(everyone["items"][1]["html"])
        bad = await client.get(f"/queue/updates?asker=x&after={since}")
        assert bad.status == 400

    serve(ctx, scenario)


def test_an_askers_id_is_escaped_in_the_badge(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url)
    add_user(ctx)
    # Not a valid Matrix id, but stored text all the same: nothing in it may become markup.
    evil = '@"><img src=x onerror=alert(1)>:example.org'
    add_question(ctx.store, "$e", "hello <b>there</b>", sender=evil, room=ROOM, ts=T0)

    async def scenario(client: Client) -> None:
        await signed_in(client)
        for path in ("/queue", question_url("$e")):
            html = await (await client.get(path)).text()
            assert "<img src=x" not in html and "<b>there</b>" not in html
            badge = BADGE.search(html)
            assert badge, path
            assert badge.group(1).startswith("&#34;&gt;&lt;img src=x onerror=alert(1)&gt; had")

    serve(ctx, scenario)
