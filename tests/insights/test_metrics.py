"""bot.insights.metrics: the Insights numbers, computed by hand from plain records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.insights.metrics import Insights, compute_insights, nearly_same, window
from bot.insights.records import (
    EventRecord,
    PostRecord,
    QuestionRecord,
    ReplyRecord,
    VoteRecord,
)

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
