"""The Insights page: the SVG chart, and the handler on a real database (SQLite and PostgreSQL).
The numbers are tested in tests/insights/."""

from __future__ import annotations

import asyncio
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.metrics import Metrics
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.models import (
    DashboardPostRow,
    QuestionRow,
    ReplyRow,
    RoomEventRow,
    SuggestionVoteRow,
)
from bot.store.room_store import RoomStore
from bot.web.charts import BarPoint, bar_chart_svg, nice_step
from bot.web.context import CTX_KEY, WebContext
from bot.web.insights import insights_page, parse_days

SVG = "{http://www.w3.org/2000/svg}"
BOT = "@keras-bot:example.org"
SUGGESTION = "This looks covered by **EarlyStopping**:\n\n1. [EarlyStopping](https://keras.io/x)"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_nice_steps() -> None:
    assert [nice_step(m) for m in (0, 1, 4, 5, 7, 12, 48, 130)] == [1, 0.2, 1, 1, 2, 5, 10, 50]


def test_bar_chart_is_xml_with_axis_labels_and_tooltips() -> None:
    points = [
        BarPoint(f"May {d}", v, f"2024-05-{d:02d}: {v} questions")
        for d, v in zip(range(1, 31), [3, 0, 7] * 10, strict=True)
    ]
    svg = bar_chart_svg(points, title="Questions per day")
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    bars = root.findall(f"{SVG}g")
    assert len(bars) == 30
    assert [b.findtext(f"{SVG}title") for b in bars][:2] == [
        "2024-05-01: 3 questions",
        "2024-05-02: 0 questions",
    ]
    heights = [float(b.findall(f"{SVG}rect")[1].get("height", "nan")) for b in bars]
    assert heights[1] == 0 and heights[0] < heights[2]
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert "May 30" in labels  # the last day is always labelled
    assert "May 29" not in labels  # 30 bars: every 3rd label only
    assert {"0", "2", "4", "6", "8"} <= set(labels)  # y axis: nice ticks up to 8 ≥ 7


def test_bar_chart_escapes_hostile_text() -> None:
    hostile = '</title></rect><script>alert("x")</script>&amp; \'<'
    svg = str(bar_chart_svg([BarPoint(hostile, 2, hostile)], title=hostile))
    root = ET.fromstring(svg)
    assert "<script" not in svg
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    assert root.findtext(f"{SVG}title") == hostile
    assert root.findtext(f"{SVG}g/{SVG}title") == hostile
    assert root.get("aria-label") == hostile
    empty = ET.fromstring(str(bar_chart_svg([], title="nothing")))
    assert empty.findall(f"{SVG}g") == []


def test_parse_days() -> None:
    assert parse_days(None) == 30
    assert parse_days("") == 30
    assert parse_days("7") == 7
    assert parse_days("0") == 1
    assert parse_days("100000") == 365
    with pytest.raises(web.HTTPBadRequest):
        parse_days("7; drop table")


# --- the handler ------------------------------------------------------------------------------
HOSTILE = "How does fit() & predict() differ? <script>alert('x')</script>"


def _fill_one(db: Database, text: str) -> None:
    """One more open, low-confidence question, asked now."""
    at = datetime.now(UTC)
    with db.session() as s:
        s.add(
            RoomEventRow(
                event_id="$late",
                room_id="!r:x",
                sender="@ann:x",
                origin_ts=ms(at),
                event_type="m.room.message",
                msgtype="m.text",
                body=text,
            )
        )
        s.flush()
        s.add(
            QuestionRow(
                event_id="$late",
                room_id="!r:x",
                asker="@ann:x",
                text=text,
                status="new",
                confidence=0.1,
                suggestion=SUGGESTION,
                sources=[{"url": "https://keras.io/x"}],
            )
        )


def _fill(db: Database, now: datetime) -> None:
    t = now - timedelta(days=3)

    def event(eid: str, sender: str, at: datetime, **kw: Any) -> RoomEventRow:
        return RoomEventRow(
            event_id=eid,
            room_id="!r:x",
            sender=sender,
            origin_ts=ms(at),
            event_type=kw.pop("event_type", "m.room.message"),
            msgtype=kw.pop("msgtype", "m.text"),
            body=kw.pop("body", "hi"),
            **kw,
        )

    def q(eid: str, text: str, status: str, confidence: float | None, at: datetime) -> list[Any]:
        return [
            event(eid, "@ann:x", at, body=text),
            QuestionRow(
                event_id=eid,
                room_id="!r:x",
                asker="@ann:x",
                text=text,
                status=status,
                confidence=confidence,
                suggestion=SUGGESTION,
                sources=[{"url": "https://keras.io/x"}],
                # stored later than asked: the page must use the room event's time
                created_at=now,
            ),
        ]

    rows: list[Any] = [
        *q("$q1", "How do I use EarlyStopping?", "answered_bot", 0.8, t),
        *q("$q2", HOSTILE, "new", 0.2, t + timedelta(hours=1)),
        *q("$q3", "how does fit & predict differ", "answered_person", 0.3, t + timedelta(hours=2)),
        *q("$q4", "HOW DOES FIT & PREDICT DIFFER?", "new", None, t + timedelta(hours=3)),
        *q("$old", "ancient question", "answered_bot", 0.9, now - timedelta(days=60)),
        ReplyRow(
            question_event_id="$q1",
            room_id="!r:x",
            txn_id="t1",
            state="sent",
            reply_event_id="$r1",
            body=SUGGESTION,
            formatted_body="",
            thread_root="$q1",
            sent_at=t + timedelta(seconds=40),
        ),
        event("$r1", BOT, t + timedelta(seconds=40), rel_type="m.thread", relates_to="$q1"),
        event(
            "$x1",
            "@ann:x",
            t + timedelta(seconds=50),
            event_type="m.reaction",
            body="👍",
            rel_type="m.annotation",
            relates_to="$r1",
            msgtype=None,
        ),
        event("$a3", "@maint:x", t + timedelta(hours=2, minutes=10), in_reply_to="$q3"),
        DashboardPostRow(
            question_event_id="$q2",
            room_id="!r:x",
            posted_by="alice",
            body="Something else entirely.",
            txn_id="p1",
            state="sent",
            reply_event_id="$p1",
            sent_at=t + timedelta(hours=1, minutes=30),
        ),
        event(
            "$p1", BOT, t + timedelta(hours=1, minutes=30), rel_type="m.thread", relates_to="$q2"
        ),
        SuggestionVoteRow(question_event_id="$q4", user_name="alice", vote=-1),
    ]
    with db.session() as s:
        for row in rows:
            s.add(row)
            s.flush()  # events before the questions that reference them


def _app(db: Database, tmp_path: Path, **ctx_kw: Any) -> web.Application:
    @web.middleware
    async def fake_auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The real auth middleware's keys are plain strings; aiohttp ≥ 3.14 warns about those.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request["user"] = "alice"
            request["csrf_token"] = "x"
        return await handler(request)

    app = web.Application(middlewares=[fake_auth])
    app[CTX_KEY] = WebContext(
        settings=load_settings(data_dir=tmp_path / "data", matrix_user_id=BOT),
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, "ok"),
        **ctx_kw,
    )
    app.router.add_get("/insights", insights_page)
    return app


def _svg_of(page: str) -> ET.Element:
    match = re.search(r"<svg.*?</svg>", page, re.S)
    assert match is not None
    return ET.fromstring(match.group(0))


def _by_id(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', page)
    assert match is not None, element_id
    return match.group(1)


def test_insights_page_without_an_encoder(tmp_path: Path, database_url: str) -> None:
    db = Database(database_url)
    db.create_schema()
    _fill(db, datetime.now(UTC))

    async def scenario() -> None:
        async with TestClient(TestServer(_app(db, tmp_path))) as client:
            response = await client.get("/insights")
            assert response.status == 200
            page = await response.text()
            assert "<script>" not in page and "&lt;script&gt;" in page
            assert _by_id(page, "total-questions") == "4"
            assert _by_id(page, "answered-share") == "50%"  # q1 (bot), q3 (person)
            assert _by_id(page, "bot-median") == "40 s"
            # q2: the dashboard post after 30 min; q3: the maintainer's reply after 10 min
            assert _by_id(page, "person-median") == "20 min"
            # q1 👍'd in the room (accepted); q2 posted differently, q4 👎'd (rejected); q3 open
            assert _by_id(page, "acceptance-rate") == "33%"
            assert "1 accepted, 2 rejected, 1 undecided" in page
            svg = _svg_of(page)
            tips = [g.findtext(f"{SVG}title") or "" for g in svg.findall(f"{SVG}g")]
            assert len(tips) == 30
            # "2024-05-01: 3 questions, 1 answered": the days add up to the total
            assert sum(int(tip.split(": ")[1].split()[0]) for tip in tips) == 4
            # Doc gaps by identical text: q3 and q4 differ only in case and punctuation.
            assert "grouped by identical text" in page
            gaps = page[page.index('id="doc-gaps"') :]
            assert '<td class="num">2</td>' in gaps
            assert 'href="/questions/%24q3"' in gaps and 'href="/questions/%24q4"' in gaps
            assert "ancient question" not in page

            week = await (await client.get("/insights?days=1")).text()
            assert _by_id(week, "total-questions") == "0"
            assert _by_id(week, "answered-share") == "—"
            assert (await client.get("/insights?days=many")).status == 400
            year = await (await client.get("/insights?days=99999")).text()
            assert _by_id(year, "total-questions") == "5"
            assert len(_svg_of(year).findall(f"{SVG}g")) == 365

    asyncio.run(scenario())
    db.close()


def test_insights_page_groups_doc_gaps_with_the_encoder(
    tmp_path: Path, encoder: Any, database_url: str
) -> None:
    db = Database(database_url)
    db.create_schema()
    _fill(db, datetime.now(UTC))
    calls: list[int] = []
    encoded: list[list[str]] = []

    async def run_cpu(job: Callable[[], Any]) -> Any:
        calls.append(1)
        return await asyncio.to_thread(job)

    def encode(texts: list[str]) -> Any:
        encoded.append(texts)
        return encoder.encode(texts)

    async def scenario() -> None:
        app = _app(db, tmp_path, encode=encode, run_cpu=run_cpu)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/insights")
            assert response.status == 200
            page = await response.text()
            assert calls == [1]
            assert "grouped by meaning" in page
            gaps = page[page.index('id="doc-gaps"') :]
            # The three fit-vs-predict questions (one of them hostile) form one gap.
            assert '<td class="num">3</td>' in gaps
            assert "&lt;script&gt;" in gaps and "<script>" not in gaps
            # The next view embeds nothing: the vectors are in the embedding cache.
            first = sorted(encoded[0])
            again = await client.get("/insights")
            assert again.status == 200 and '<td class="num">3</td>' in await again.text()
            assert calls == [1] and len(encoded) == 1
            # A new low-confidence question: only its text is embedded.
            _fill_one(db, "How can I plot the learning rate schedule?")
            assert (await client.get("/insights")).status == 200
            assert encoded[1:] == [["How can I plot the learning rate schedule?"]]
            assert len(first) == len(set(first))  # each distinct text embedded once

    asyncio.run(scenario())
    db.close()


def test_insights_page_falls_back_to_text_when_embedding_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    db = Database(database_url)
    db.create_schema()
    _fill(db, datetime.now(UTC))

    def broken_encode(texts: list[str]) -> np.ndarray:
        raise RuntimeError("model unloaded")

    async def scenario() -> None:
        async with TestClient(TestServer(_app(db, tmp_path, encode=broken_encode))) as client:
            response = await client.get("/insights")
            assert response.status == 200
            page = await response.text()
            assert "embedding them failed" in page
            assert '<td class="num">2</td>' in page[page.index('id="doc-gaps"') :]

    asyncio.run(scenario())
    db.close()
    assert any("doc gaps failed" in r.getMessage() for r in caplog.records)


def test_doc_gap_embedding_runs_in_small_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The CPU worker also answers the room: embed in batches so a question can slip in."""
    from bot.web import insights
    from bot.web.context import CTX_KEY

    db = Database(database_url)
    db.create_schema()
    sizes: list[int] = []
    rng = np.random.default_rng(0)

    def encode(texts: list[str]) -> Any:
        sizes.append(len(texts))
        vectors = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(insights, "EMBED_BATCH", 2)
    ctx = _app(db, tmp_path, encode=encode)[CTX_KEY]
    texts = ["a?", "b?", "a?", "c?", "d?", "e?"]
    vectors = asyncio.run(insights._embed(ctx, texts))
    assert vectors is not None and vectors.shape == (6, 8)
    assert sizes == [2, 2, 1]  # five distinct texts, two per job
    np.testing.assert_array_equal(vectors[0], vectors[2])
    again = asyncio.run(insights._embed(ctx, texts))
    assert sizes == [2, 2, 1] and again is not None
    np.testing.assert_allclose(again, vectors)
    db.close()


def _newcomers_table(page: str) -> dict[str, list[str]]:
    table = page[page.index('id="newcomers"') :].split("</table>", 1)[0]
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>(.*?)</tr>", table, re.S)
    return {label: re.findall(r"<td>(.*?)</td>", rest) for label, rest in rows}


def test_insights_put_first_time_askers_next_to_everyone_else(
    tmp_path: Path, database_url: str
) -> None:
    db = Database(database_url)
    db.create_schema()
    t = datetime.now(UTC) - timedelta(days=2)

    def message(eid: str, sender: str, at: datetime, **kw: Any) -> RoomEventRow:
        return RoomEventRow(
            event_id=eid,
            room_id="!r:x",
            sender=sender,
            origin_ts=ms(at),
            event_type="m.room.message",
            msgtype="m.text",
            body=kw.pop("body", "hi"),
            **kw,
        )

    def question(eid: str, asker: str, status: str) -> QuestionRow:
        return QuestionRow(
            event_id=eid, room_id="!r:x", asker=asker, text="how?", status=status, confidence=0.2
        )

    rows: list[Any] = [
        message("$hello", "@ann:x", t - timedelta(days=40)),  # ann posted long before
        message("$q1", "@ann:x", t, body="how do I save?"),
        question("$q1", "@ann:x", "answered_person"),
        message("$a1", "@maint:x", t + timedelta(minutes=40), in_reply_to="$q1"),
        message("$q2", "@new:x", t + timedelta(hours=1), body="how do I load?"),
        question("$q2", "@new:x", "answered_person"),
        message("$a2", "@maint:x", t + timedelta(hours=1, minutes=10), in_reply_to="$q2"),
        message("$q3", "@new2:x", t + timedelta(hours=2), body="why does it crash?"),
        question("$q3", "@new2:x", "new"),
    ]
    with db.session() as s:
        for row in rows:
            s.add(row)
            s.flush()

    async def scenario() -> None:
        async with TestClient(TestServer(_app(db, tmp_path))) as client:
            page = await (await client.get("/insights?days=7")).text()
            table = _newcomers_table(page)
            # questions, per week, answered, median time to first answer
            assert table["first-time askers"] == ["2", "2.0", "50%", "10 min"]
            assert table["everyone else"] == ["1", "1.0", "100%", "40 min"]

    asyncio.run(scenario())
    db.close()
