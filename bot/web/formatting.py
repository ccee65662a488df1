"""Small display helpers for the dashboard's templates (registered as Jinja filters)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

import jinja2

from bot.timeutil import as_utc
from bot.web.queue_view import clean_title, short_id
from bot.web.text_html import linkify

STATUS_LABELS = {
    "new": "New",
    "suggested": "Suggestion ready",
    "answered_bot": "Answered by the bot",
    "answered_person": "Answered by a person",
    "dismissed": "Dismissed",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def question_url(event_id: str, action: str = "") -> str:
    # Event ids may hold "/" and "+" (older room versions): quote every reserved character.
    url = "/questions/" + quote(event_id, safe="")
    return f"{url}/{action}" if action else url


def web_url(url: object) -> str:
    """The URL if it is http(s), else "": a stored link never becomes ``javascript:``."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return ""


def when(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def iso(moment: datetime | None) -> str:
    return as_utc(moment).isoformat() if moment else ""


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{seconds} s ago"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def register(env: jinja2.Environment) -> None:
    """Idempotent: the environment is shared and cached."""
    env.filters.update(
        status_label=status_label,
        question_url=question_url,
        web_url=web_url,
        when=when,
        iso=iso,
        ago=ago,
        percent=percent,
        short_id=short_id,
        clean_title=clean_title,
        linkify=linkify,
    )
