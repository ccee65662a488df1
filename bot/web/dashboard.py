"""The triage queue (``/queue``) and its live updates (``/queue/updates``), plus the routes of
the other dashboard pages (question, try it, index), which live in their own modules.

Filters are plain query parameters, so a filtered queue is a link anyone can share and the
page works without JavaScript; ``static/queue.js`` only adds rows that arrive while it is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from bot.store.dashboard_store import (
    ANSWERED_STATUSES,
    ASKERS,
    OPEN_STATUSES,
    STATUSES,
    QueueFilters,
    QueueItem,
)
from bot.web import digests_page, index_page, past_answers_page, questions, try_it
from bot.web.queue_view import queue_row
from bot.web.request_helpers import context, dashboard_store, flash, in_thread
from bot.web.templating import environment, render

PAGE_SIZE = 25
# What the filter offers: where a question stands for the maintainers. What happened to each
# (replied unsure, skipped and why, ...) is its row's status, from bot/web/queue_view.py.
STATUS_CHOICES = (
    ("open", "Open (waiting for a maintainer)"),
    ("answered", "Answered"),
    ("answered_bot", "Replied by the bot"),
    ("answered_person", "Answered by a person"),
    ("dismissed", "Dismissed"),
    ("all", "All"),
)
STATUS_GROUPS = {"open": OPEN_STATUSES, "answered": ANSWERED_STATUSES, "all": ()}
# Who asked (bot/store/newcomers.py): a first question is the asker's first message in the room.
ASKER_CHOICES = (
    ("", "Everyone"),
    ("new", "First question"),
    ("returning", "Posted before"),
)


class BadQuery(ValueError):
    """A query parameter the queue cannot use; the message names it."""


@dataclass(frozen=True)
class QueueQuery:
    """The queue's query parameters, checked, and how to write them back into links."""

    filters: QueueFilters
    status: str
    room: str
    min_confidence: str  # as typed (percent), for the form
    max_confidence: str
    page: int
    asker: str = ""

    def params(self, **changes: Any) -> dict[str, str]:
        values = {
            "room": self.room,
            "status": self.status,
            "min_confidence": self.min_confidence,
            "max_confidence": self.max_confidence,
            "asker": self.asker,
            "page": str(self.page),
        }
        values.update({k: str(v) for k, v in changes.items()})
        # Defaults are left out: short, readable links.
        defaults = {"status": "open", "page": "1"}
        return {k: v for k, v in values.items() if v and defaults.get(k) != v}

    def link(self, path: str = "/queue", **changes: Any) -> str:
        params = self.params(**changes)
        return f"{path}?{urlencode(params)}" if params else path


def _percent(query: Mapping[str, str], name: str) -> tuple[str, float | None]:
    raw = query.get(name, "").strip().rstrip("%").strip()
    if not raw:
        return "", None
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number from 0 to 100") from None
    if not 0 <= value <= 100:
        raise BadQuery(f"{name} must be a number from 0 to 100")
    return raw, value / 100


def parse_queue_query(query: Mapping[str, str]) -> QueueQuery:
    status = query.get("status", "open").strip() or "open"
    if status in STATUS_GROUPS:
        statuses: tuple[str, ...] = STATUS_GROUPS[status]
    elif status in STATUSES:  # "new" and "suggested" too, for links made before
        statuses = (status,)
    else:
        raise BadQuery(f"status must be one of {', '.join(STATUS_GROUPS)}, {', '.join(STATUSES)}")
    room = query.get("room", "").strip()
    asker = query.get("asker", "").strip()
    if asker and asker not in ASKERS:
        raise BadQuery(f"asker must be one of {', '.join(ASKERS)} (or empty for everyone)")
    min_raw, min_value = _percent(query, "min_confidence")
    max_raw, max_value = _percent(query, "max_confidence")
    try:
        page = int(query.get("page", "1") or "1")
    except ValueError:
        raise BadQuery("page must be a whole number") from None
    return QueueQuery(
        filters=QueueFilters(
            room=room or None,
            statuses=statuses,
            min_confidence=min_value,
            max_confidence=max_value,
            asker=asker or None,
        ),
        status=status,
        room=room,
        min_confidence=min_raw,
        max_confidence=max_raw,
        page=max(1, page),
        asker=asker,
    )


def _row_html(item: QueueItem, threshold: float) -> str:
    return environment().get_template("_queue_row.html").render(row=queue_row(item, threshold))


async def queue_page(request: web.Request) -> web.StreamResponse:
    try:
        query = parse_queue_query(request.query)
    except BadQuery as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    store = dashboard_store(request)
    page = await in_thread(store.queue, query.filters, page=query.page, page_size=PAGE_SIZE)
    rooms = await in_thread(store.rooms)
    threshold = context(request).settings.reply_threshold
    # The newest row shown is where live updates start; an empty queue starts from now.
    latest = page.items[0].created_at if page.items else datetime.now(UTC)
    return render(
        request,
        "queue.html",
        {
            "page": page,
            "rows": [queue_row(item, threshold) for item in page.items],
            "query": query,
            "rooms": rooms,
            "status_choices": STATUS_CHOICES,
            "asker_choices": ASKER_CHOICES,
            "flash": flash(request),
            "latest": latest.isoformat(),
            # Live rows only make sense at the top of the queue.
            "live": query.page == 1,
            "updates_url": query.link("/queue/updates", page=1),
            "refresh_url": query.link(),
            "prev_url": query.link(page=query.page - 1) if page.has_prev else None,
            "next_url": query.link(page=query.page + 1) if page.has_next else None,
        },
    )


async def queue_updates(request: web.Request) -> web.StreamResponse:
    """JSON for ``queue.js``: rows queued after ``after`` (ISO time), same filters, rendered by
    the same template as the page, newest first."""
    try:
        query = parse_queue_query(request.query)
        after = datetime.fromisoformat(request.query.get("after", ""))
    except (BadQuery, ValueError) as exc:
        return web.json_response({"error": str(exc) or "bad after"}, status=400)
    # A naive ``after`` is read as UTC by the store (``as_utc``).
    items = await in_thread(dashboard_store(request).queued_after, query.filters, after)
    threshold = context(request).settings.reply_threshold
    return web.json_response(
        {
            "items": [{"event_id": i.event_id, "html": _row_html(i, threshold)} for i in items],
            "latest": (items[0].created_at if items else after).isoformat(),
        },
        headers={"Cache-Control": "no-store"},
    )


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/queue", queue_page)
    app.router.add_get("/queue/updates", queue_updates)
    questions.add_question_routes(app)
    try_it.add_try_routes(app)
    index_page.add_index_routes(app)
    past_answers_page.add_past_answer_routes(app)
    digests_page.add_digest_routes(app)
