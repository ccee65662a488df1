"""The maintainers' digest: pure Markdown from two periods' Insights and the open questions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.insights.digest import build_digest
from bot.insights.doc_gaps import DocGap
from bot.insights.metrics import Insights, compute_insights
from bot.insights.records import QuestionRecord

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def question(
    eid: str, text: str, hours_ago: float, *, status: str = "new", first_question: bool = False
) -> QuestionRecord:
    return QuestionRecord(
        event_id=eid,
        asker="@ann:x",
        text=text,
        status=status,
        asked_at=NOW - timedelta(hours=hours_ago),
        room_id="!r:x",
        first_question=first_question,
    )


def period(questions: list[QuestionRecord], at: datetime) -> Insights:
    return compute_insights(questions, [], [], [], [], bot_users=set(), now=at, days=7)


def test_the_digest_lists_what_waits_and_compares_the_periods() -> None:
    waiting = [
        question("$old", "Why does [my](javascript:x) *model* fail?", 100, first_question=True),
        question("$new", "how to freeze layers", 5),
    ]
    answered = question("$a", "how do I save", 30, status="answered_person")
    last_week = question("$b", "how do I load", 24 * 8, status="new")
    this = period([*waiting, answered, last_week], NOW)
    before = period([*waiting, answered, last_week], NOW - timedelta(days=7))
    gap = DocGap(representative=waiting[1], members=[waiting[1], waiting[1]])
    text = build_digest(
        this, before, waiting, 5, [gap], now=NOW, link=lambda q: f"https://m/{q.event_id}"
    )
    assert text.startswith("# Maintainers' digest, 2026-11-24 to 2026-11-30\n")
    assert "## Still unanswered (5, oldest first)" in text
    first, second = [line for line in text.splitlines() if line.startswith("- ") and "ago" in line]
    # Oldest first as given, the age, the link, the first-time marker; user text escaped.
    assert first == (
        r"- 4 d ago: [Why does \[my\](javascript:x) \*model\* fail?](https://m/$old)"
        " — **first question**"
    )
    assert second == "- 5 h ago: [how to freeze layers](https://m/$new)"
    assert "- … and 3 more on the dashboard" in text
    assert "First-time askers waiting: 1." in text
    assert "- 2× like “how to freeze layers”" in text
    assert "- Questions: 3 (before: 1)" in text
    assert "- Answered: 33% (before: 0%)" in text


def test_an_empty_week_says_so() -> None:
    this = period([], NOW)
    text = build_digest(this, this, [], 0, [], now=NOW, link=lambda q: "")
    assert "Nothing is waiting." in text
    assert "No low-confidence questions repeat." in text
    assert "- Questions: 0 (before: 0)" in text
