"""The Insights page: hand-computed numbers for the pure functions, doc-gap grouping against a
brute-force oracle, the SVG chart, and the handler on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import math
import random
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.insights.doc_gaps import Group, group_doc_gaps, normalise_text
from bot.insights.metrics import Insights, compute_insights, nearly_same, window
from bot.insights.records import (
    EventRecord,
    PostRecord,
    QuestionRecord,
    ReplyRecord,
    VoteRecord,
)
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
NOW = datetime(2024, 5, 20, 12, 0, tzinfo=UTC)
BOT = "@keras-bot:example.org"
SUGGESTION = "This looks covered by **EarlyStopping**:\n\n1. [EarlyStopping](https://keras.io/x)"


def question(
    event_id: str,
    asked_at: datetime,
    status: str = "suggested",
    *,
    asker: str = "@ann:example.org",
    text: str = "a question",
    confidence: float | None = 0.9,
    suggestion: str | None = SUGGESTION,
    has_sources: bool = True,
    answered_at: datetime | None = None,
    answered_by: str | None = None,
) -> QuestionRecord:
    return QuestionRecord(
        event_id=event_id,
        asker=asker,
        text=text,
        status=status,
        asked_at=asked_at,
        confidence=confidence,
        suggestion=suggestion,
        has_sources=has_sources,
        answered_at=answered_at,
        answered_by=answered_by,
    )


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def compute(
    questions: Sequence[QuestionRecord],
    replies: Sequence[ReplyRecord] = (),
    posts: Sequence[PostRecord] = (),
    votes: Sequence[VoteRecord] = (),
    events: Sequence[EventRecord] = (),
    *,
    days: int = 30,
    now: datetime = NOW,
) -> Insights:
    return compute_insights(
        questions,
        replies,
        posts,
        votes,
        events,
        bot_users={BOT},
        now=now,
        days=days,
        reply_threshold=0.6,
    )


# --- window, volume, answered share -----------------------------------------------------------
def test_window_is_utc_calendar_days_including_today() -> None:
    # 02:00 on the 21st in UTC+5 is 21:00 on the 20th in UTC: "today" is the 20th.
    local = datetime(2024, 5, 21, 2, 0, tzinfo=timezone(timedelta(hours=5)))
    start, end = window(local, 3)
    assert start == datetime(2024, 5, 18, tzinfo=UTC)
    assert end == datetime(2024, 5, 21, tzinfo=UTC)
    assert window(datetime(2024, 5, 20, 23, 59), 1) == (  # naive = UTC
        datetime(2024, 5, 20, tzinfo=UTC),
        datetime(2024, 5, 21, tzinfo=UTC),
    )
    with pytest.raises(ValueError):
        window(NOW, 0)


def test_questions_per_day_and_answered_share() -> None:
    plus2 = timezone(timedelta(hours=2))
    qs = [
        question("$a", NOW - timedelta(hours=1), "answered_bot"),
        question("$b", NOW - timedelta(days=1), "answered_person"),
        # 01:00 on the 20th at UTC+2 is 23:00 on the 19th in UTC.
        question("$c", datetime(2024, 5, 20, 1, 0, tzinfo=plus2), "new"),
        question("$d", datetime(2024, 5, 14, 8, 0), "dismissed"),  # naive: UTC
        question("$e", datetime(2024, 5, 14, 0, 0, tzinfo=UTC), "suggested"),  # first day
        question("$old", datetime(2024, 5, 13, 23, 59, tzinfo=UTC), "answered_bot"),  # outside
        question("$future", datetime(2024, 5, 21, 0, 0, tzinfo=UTC), "answered_bot"),  # outside
    ]
    result = compute(qs, days=7)
    assert result.start == datetime(2024, 5, 14, tzinfo=UTC)
    assert [d.day for d in result.per_day] == [date(2024, 5, 14) + timedelta(i) for i in range(7)]
    assert [d.questions for d in result.per_day] == [2, 0, 0, 0, 0, 2, 1]
    assert [d.answered for d in result.per_day] == [0, 0, 0, 0, 0, 1, 1]
    assert result.total == 5
    assert (result.answered_bot, result.answered_person) == (1, 1)
    assert result.answered_share == pytest.approx(2 / 5)
    assert result.last_day == date(2024, 5, 20)


def test_empty_data_gives_zeros_and_no_rates() -> None:
    result = compute([], days=30)
    assert result.total == 0
    assert len(result.per_day) == 30
    assert all(d.questions == 0 and d.answered == 0 for d in result.per_day)
    assert result.answered_share is None
    assert result.bot_median_seconds is None
    assert result.person_median_seconds is None
    assert result.acceptance.rate is None
    assert (result.acceptance.accepted, result.acceptance.rejected) == (0, 0)
    assert result.doc_gap_candidates == []


# --- time to first answer ---------------------------------------------------------------------
def test_bot_time_to_first_answer_counts_confident_replies_only() -> None:
    t = NOW - timedelta(days=2)
    qs = [
        question("$q1", t, "answered_bot"),
        question("$unsure", t, "new"),  # got the "not sure" note: not an answer
        question("$q3", t, "dismissed", answered_by="bot"),  # answered first, dismissed later
        question("$pending", t, "answered_bot"),  # claimed, never confirmed sent
        question("$q5", t, "answered_person", answered_by="bot", answered_at=t + timedelta(0, 120)),
    ]
    replies = [
        ReplyRecord("$q1", "sent", "$r1", t + timedelta(seconds=30)),
        ReplyRecord("$unsure", "sent", "$r2", t + timedelta(seconds=10)),
        # SQLite gives naive datetimes back: they are UTC.
        ReplyRecord("$q3", "sent", "$r3", (t + timedelta(seconds=90)).replace(tzinfo=None)),
        ReplyRecord("$pending", "pending"),
    ]
    result = compute(qs, replies)
    assert sorted(result.bot_answer_seconds) == [30, 90, 120]
    assert result.bot_median_seconds == 90
    assert result.person_median_seconds is None


def test_person_time_to_first_answer_is_the_earliest_human_answer() -> None:
    t = NOW - timedelta(days=3)
    ann, bob, carol, maint = "@ann:x", "@bob:x", "@carol:x", "@maint:x"

    def ev(eid: str, sender: str, secs: float, **kw: Any) -> EventRecord:
        return EventRecord(eid, sender, ms(t + timedelta(seconds=secs)), **kw)

    qs = [
        question("$q1", t, asker=ann),
        question("$q2", t, "answered_person", answered_by=maint, answered_at=t + timedelta(0, 900)),
        question(
            "$q3", t, "answered_person", answered_by=maint, answered_at=t + timedelta(0, 1800)
        ),
        question("$q4", t),  # dashboard post a little "before" the question: clock skew
        question("$q5", t, "answered_bot"),  # only the bot answered
    ]
    events = [
        ev("$e1", bob, 300, rel_type="m.thread", relates_to="$q1"),
        ev("$e2", carol, 120, in_reply_to="$q1"),
        ev("$e3", ann, 10, rel_type="m.thread", relates_to="$q1"),  # the asker
        ev("$e4", BOT, 5, rel_type="m.thread", relates_to="$q1"),  # the bot
        ev("$e5", "@ci:x", 20, msgtype="m.notice", rel_type="m.thread", relates_to="$q1"),
        ev("$e6", bob, 30, event_type="m.reaction", body="👍", relates_to="$q1"),
        ev("$e7", bob, 40, rel_type="m.replace", relates_to="$e1"),  # an edit
        ev("$e8", bob, 50, rel_type="m.annotation", relates_to="$q1"),
        # A dashboard post's event (sent as the bot, maybe through a relay with another name)
        ev("$post3", "@relay:x", 5, rel_type="m.thread", relates_to="$q3"),
        ev("$e9", bob, 1, rel_type="m.thread", relates_to="$elsewhere"),
        ev("$e10", bob, 2, in_reply_to="$q5"),  # a person also answered q5
    ]
    posts = [
        PostRecord("$q2", "sent", "see the docs", maint, "$post2", t + timedelta(seconds=600)),
        PostRecord("$q2", "pending", "draft", maint, None, None, t + timedelta(seconds=60)),
        PostRecord("$q3", "sent", "x", maint, "$post3", t + timedelta(seconds=2000)),
        PostRecord("$q4", "sent", "x", maint, "$post4", t - timedelta(seconds=5)),
    ]
    result = compute(
        qs, [ReplyRecord("$q5", "sent", "$r5", t + timedelta(0, 9))], posts, [], events
    )
    # q1: carol's reply (120 s); q2: the post (600) before answered_at (900); q3: answered_at
    # (1800) before the post (2000); q4: clamped to 0; q5: bob's reply (2 s).
    assert sorted(result.person_answer_seconds) == [0, 2, 120, 600, 1800]
    assert result.person_median_seconds == 120
    assert result.bot_answer_seconds == [9]


# --- suggestion acceptance --------------------------------------------------------------------
def test_nearly_same_uses_difflib_ratio_at_point_nine() -> None:
    # ratio = 2·matches / total length: 2·9/20 = 0.9 (kept), 2·8/20 = 0.8 (not).
    assert nearly_same("abcdefghij", "abcdefghiX")
    assert not nearly_same("abcdefghij", "abcdefghXY")
    assert nearly_same("Use the  EarlyStopping\ncallback.", "Use the EarlyStopping callback.")
    long = "x" * 150 + " ".join(f"word{i}" for i in range(300))
    assert nearly_same(long, long + " thanks!")  # autojunk would have undercounted this


def test_acceptance_rules_in_order() -> None:
    t = NOW - timedelta(days=1)
    reworded = SUGGESTION.replace("\n\n", "\n") + " Hope that helps."
    assert nearly_same(SUGGESTION, reworded)
    qs = [
        question("$a", t, "answered_bot"),  # confident reply, nobody objected: accepted
        question("$b", t, "answered_bot"),  # 👎 (with a skin tone) in the room: rejected
        question("$c", t),  # 👍 and 👎 from two maintainers: 👎 wins
        question("$d", t),  # 👍 from a maintainer: accepted
        question("$e", t, "answered_person"),  # posted nearly unchanged: accepted
        question("$f", t, "answered_person"),  # posted something else: rejected
        question("$g", t, "dismissed"),  # dismissed with a suggestion: rejected
        question("$h", t),  # nothing happened: undecided
        question("$i", t, "dismissed", has_sources=False),  # no suggestion: not counted
        question("$j", t, "new"),  # unsure note 👎'd, bot's own 👍: undecided
        question("$k", t, "answered_bot"),  # 👍 reaction, then a different post: 👍 decides
    ]
    replies = [
        ReplyRecord("$a", "sent", "$ra", t + timedelta(seconds=5)),
        ReplyRecord("$b", "sent", "$rb", t + timedelta(seconds=5)),
        ReplyRecord("$j", "sent", "$rj", t + timedelta(seconds=5)),
        ReplyRecord("$k", "sent", "$rk", t + timedelta(seconds=5)),
    ]
    events = [
        EventRecord(
            "$x1", "@ann:x", ms(t) + 9000, "m.reaction", None, "👎🏽", "m.annotation", "$rb"
        ),
        EventRecord("$x2", "@ann:x", ms(t) + 9000, "m.reaction", None, "👎", "m.annotation", "$rj"),
        EventRecord("$x3", BOT, ms(t) + 9000, "m.reaction", None, "👍", "m.annotation", "$rj"),
        EventRecord("$x4", "@ann:x", ms(t) + 9000, "m.reaction", None, "👍️", "m.annotation", "$rk"),
        EventRecord("$x5", "@ann:x", ms(t) + 9000, "m.reaction", None, "🎉", "m.annotation", "$ra"),
    ]
    votes = [VoteRecord("$c", "alice", 1), VoteRecord("$c", "bob", -1), VoteRecord("$d", "bob", 1)]
    posts = [
        PostRecord("$e", "sent", "something else first", "alice", "$pe1", t + timedelta(0, 60)),
        PostRecord("$e", "sent", reworded, "alice", "$pe2", t + timedelta(0, 90)),
        PostRecord("$f", "sent", "Use a LearningRateScheduler instead.", "bob", "$pf", t),
        PostRecord("$h", "rejected", SUGGESTION, "bob", None, None, t),  # never sent
        PostRecord("$k", "sent", "totally different", "bob", "$pk", t),
    ]
    acc = compute(qs, replies, posts, votes, events).acceptance
    assert acc.by_reason == {
        "thumbs_down": 2,  # b, c
        "thumbs_up": 2,  # d, k
        "posted_same": 1,  # e
        "posted_different": 1,  # f
        "bot_replied": 1,  # a
        "dismissed": 1,  # g
    }
    assert (acc.accepted, acc.rejected, acc.undecided) == (4, 4, 2)  # undecided: h, j
    assert acc.rate == pytest.approx(0.5)


# --- doc gaps ---------------------------------------------------------------------------------
def test_doc_gap_candidates_are_low_confidence_and_not_dismissed() -> None:
    t = NOW - timedelta(days=1)
    qs = [
        question("$later", t + timedelta(hours=1), "new", confidence=0.1),
        question("$low", t, "answered_person", confidence=0.59),
        question("$none", t + timedelta(hours=2), "new", confidence=None),
        question("$at", t, "answered_bot", confidence=0.6),  # at the threshold: confident
        question("$dismissed", t, "dismissed", confidence=0.1),
    ]
    gaps = compute(qs).doc_gap_candidates
    assert [q.event_id for q in gaps] == ["$low", "$later", "$none"]


def _cos(a: list[float], b: list[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def oracle_groups(vectors: list[list[float]], threshold: float) -> list[tuple[list[int], int]]:
    """All-pairs cosine in plain Python, then the greedy rule and the most central member."""
    n = len(vectors)
    sim = [[_cos(vectors[i], vectors[j]) for j in range(n)] for i in range(n)]
    groups: list[list[int]] = []
    for i in range(n):
        for g in groups:
            if sim[i][g[0]] >= threshold:
                g.append(i)
                break
        else:
            groups.append([i])
    result = []
    for g in groups:
        means = [sum(sim[a][b] for b in g) / len(g) for a in g]
        # Equal within float32 rounding: the earliest member.
        result.append((g, next(a for a, m in zip(g, means, strict=True) if m >= max(means) - 1e-6)))
    result.sort(key=lambda item: (-len(item[0]), item[0][0]))
    return result


def _as_pairs(groups: list[Group]) -> list[tuple[list[int], int]]:
    return [(list(g.members), g.central) for g in groups]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouping_matches_brute_force_on_random_vectors(seed: int) -> None:
    rng = random.Random(seed)
    dim, threshold = 12, 0.6
    centres = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(6)]
    vectors = []
    for _ in range(80):
        if rng.random() < 0.7:  # near a topic, so groups of several form
            c = rng.choice(centres)
            v = [x + rng.gauss(0, 0.45) for x in c]
        else:
            v = [rng.gauss(0, 1) for _ in range(dim)]
        vectors.append(v)
    # Stay clear of ties at the threshold, where float rounding could decide either way.
    assert all(abs(_cos(a, b) - threshold) > 1e-6 for a in vectors for b in vectors if a is not b)
    got = group_doc_gaps(["q"] * len(vectors), np.array(vectors), threshold)
    expected = oracle_groups(vectors, threshold)
    assert _as_pairs(got) == expected
    assert sorted(i for g in got for i in g.members) == list(range(len(vectors)))
    assert any(g.size >= 3 for g in got) and any(g.size == 1 for g in got)


def test_grouping_edge_cases() -> None:
    assert group_doc_gaps([], np.zeros((0, 4), dtype=np.float32)) == []
    with pytest.raises(ValueError):
        group_doc_gaps(["a", "b"], np.ones((3, 4), dtype=np.float32))
    # A zero vector (empty text from some encoder) joins nothing and is its own group.
    vecs = np.array([[1, 0], [0, 0], [1, 0.1]], dtype=np.float32)
    assert _as_pairs(group_doc_gaps(["a", "", "b"], vecs, 0.6)) == [([0, 2], 0), ([1], 1)]


def test_grouping_without_an_encoder_uses_normalised_text() -> None:
    texts = [
        "How do I freeze layers?",
        "What is a Dense layer?",
        "how do i  freeze LAYERS",
        "How do I freeze layers!!",
        "???",
        "?? ?",
    ]
    assert normalise_text("  How do I\tfreeze_layers? ") == "how do i freeze layers"
    groups = group_doc_gaps(texts, None)
    assert _as_pairs(groups) == [([0, 2, 3], 0), ([1], 1), ([4], 4), ([5], 5)]


def test_grouping_real_embeddings_puts_paraphrases_together(encoder: Any) -> None:
    texts = [
        "How do I stop training when the validation loss stops improving?",
        "How do I save a trained Keras model and load it back?",
        "What is the difference between Conv2D and DepthwiseConv2D?",
        "How can I stop training early once the validation loss is no longer improving?",
        "How to install keras with GPU support on Windows?",
        "Is there a way to stop model.fit early if the validation loss plateaus?",
        "How can I save my model to disk and load it again later?",
    ]
    vectors = encoder.encode(texts)
    groups = group_doc_gaps(texts, vectors, 0.6)
    assert [list(g.members) for g in groups] == [[0, 3, 5], [1, 6], [2], [4]]
    assert _as_pairs(groups) == oracle_groups(vectors.astype(float).tolist(), 0.6)


# --- the chart --------------------------------------------------------------------------------
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
