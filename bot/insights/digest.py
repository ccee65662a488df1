"""The maintainers' week as Markdown: what still waits, who is new, where the docs fall short,
and how this period compares with the one before (``supportbot digest``).

Pure: it reads the Insights of two periods and the open questions the store loaded, and
writes text. User text is escaped so a question cannot inject links or formatting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bot.insights.doc_gaps import DocGap
from bot.insights.metrics import Insights, format_duration, format_share
from bot.insights.records import QuestionRecord
from bot.markdown_escape import escape_markdown
from bot.timeutil import as_utc

QUESTION_CHARS = 90  # a question's first line in a list: enough to recognise it


def _line(text: str, limit: int = QUESTION_CHARS) -> str:
    """One escaped line of a person's text, cut at a word when too long."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[:limit].rsplit(" ", 1)[0] + "…"
    return escape_markdown(flat)


def _age(asked: datetime, now: datetime) -> str:
    hours = (as_utc(now) - as_utc(asked)).total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} d"


def _change(now: float | None, before: float | None, fmt: Callable[[float | None], str]) -> str:
    return f"{fmt(now)} (before: {fmt(before)})"


def _numbers(this: Insights, before: Insights) -> list[str]:
    return [
        f"- Questions: {this.total} (before: {before.total})",
        f"- Answered: {_change(this.answered_share, before.answered_share, format_share)}",
        "- Median time to a person's first answer: "
        + _change(this.person_median_seconds, before.person_median_seconds, format_duration),
        "- Median time to the bot's confident answer: "
        + _change(this.bot_median_seconds, before.bot_median_seconds, format_duration),
        "- Bot suggestions accepted: "
        + _change(this.acceptance.rate, before.acceptance.rate, format_share)
        + f", {this.acceptance.accepted} accepted, {this.acceptance.rejected} rejected",
    ]


def build_digest(
    this: Insights,
    before: Insights,
    waiting: Sequence[QuestionRecord],
    waiting_total: int,
    gaps: Sequence[DocGap],
    *,
    now: datetime,
    link: Callable[[QuestionRecord], str],
) -> str:
    """The digest for ``this`` period (compared with ``before``): the oldest open questions
    (``waiting``, ``waiting_total`` in all) with links, first-time askers among them, the
    largest doc-gap groups, and the numbers."""
    title = f"# Maintainers' digest, {this.start.date().isoformat()} to {this.last_day.isoformat()}"
    lines = [title, "", f"## Still unanswered ({waiting_total}, oldest first)", ""]
    if not waiting:
        lines.append("Nothing is waiting. 🎉")
    for q in waiting:
        new = " — **first question**" if q.first_question else ""
        lines.append(f"- {_age(q.asked_at, now)} ago: [{_line(q.text)}]({link(q)}){new}")
    if waiting_total > len(waiting):
        lines.append(f"- … and {waiting_total - len(waiting)} more on the dashboard")
    newcomers = sum(q.first_question for q in waiting)
    lines += ["", f"First-time askers waiting: {newcomers}."]
    if this.newcomers is not None and this.newcomers.questions:
        g = this.newcomers
        lines.append(
            f"First-time askers this period: {g.questions} questions, "
            f"{format_share(g.answered_share)} answered, "
            f"median first answer {format_duration(g.median_seconds)}."
        )
    lines += ["", "## Largest doc gaps", ""]
    if not gaps:
        lines.append("No low-confidence questions repeat.")
    for gap in gaps:
        asked = len(gap.members)
        lines.append(f"- {asked}× like “{_line(gap.representative.text)}”")
    lines += ["", "## This period against the one before", "", *_numbers(this, before)]
    return "\n".join(lines) + "\n"
