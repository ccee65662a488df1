"""One question: its thread, the bot's suggestion with sources, and what a maintainer can do
about it (post a reply as the bot, mark answered, dismiss, reopen, vote on the suggestion).

Every action is a POST (CSRF-checked by the auth middleware) answered by a 303 back to the
page with a flash key, so reloading never repeats it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from bot.answering.render import markdown_to_html
from bot.errors import SupportBotError
from bot.store.dashboard_store import OPEN_STATUSES, QuestionDetail
from bot.store.past_answers import PastAnswerStore
from bot.web.formatting import question_url
from bot.web.queue_view import is_confident, queue_row
from bot.web.request_helpers import context, dashboard_store, flash, in_thread, signed_in_user
from bot.web.templating import render
from bot.web.text_html import excerpt_html

log = logging.getLogger(__name__)

MAX_POST_CHARS = 20_000  # well under a Matrix event's 64 KiB with the HTML copy
VOTES = {"up": 1, "down": -1, "none": 0}


def _event_id(request: web.Request) -> str:
    return request.match_info["event_id"]


def _past_answer_excerpts(request: web.Request, detail: QuestionDetail) -> list[str]:
    """For each source that is a past answer from the room, the start of that answer with its
    code blocks (the stored source keeps one line of prose only); "" for the others."""
    store = PastAnswerStore(context(request).db)
    found: list[str] = []
    for source in detail.sources:
        past = store.get(str(source.get("doc_id"))) if source.get("kind") == "thread" else None
        found.append(excerpt_html(past.answer) if past is not None else "")
    return found


async def _page(
    request: web.Request,
    *,
    draft: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    event_id = _event_id(request)
    store = dashboard_store(request)
    detail = await in_thread(store.question, event_id)
    if detail is None:
        return render(request, "not_found.html", {"what": "question", "back": "/queue"}, status=404)
    user = signed_in_user(request)
    thread = await in_thread(store.thread, event_id)
    tally = await in_thread(store.votes, event_id, user)
    posts = await in_thread(store.posts, event_id)
    excerpts = await in_thread(_past_answer_excerpts, request, detail)
    ctx = context(request)
    threshold = ctx.settings.reply_threshold
    row = queue_row(detail.item, threshold)
    # Only a suggestion the bot stands behind is a draft; an unsure one ("I'm not sure…")
    # would have to be deleted first, so it is shown beside the empty editor instead.
    confident = is_confident(
        confidence=detail.item.confidence,
        threshold=threshold,
        suggestion=detail.suggestion,
        status=detail.item.status,
        outcome=detail.item.outcome,
    )
    return render(
        request,
        "question.html",
        {
            "q": detail,
            "thread": thread,
            # The bot's messages are Markdown it wrote: shown rendered, like the suggestion
            # (markdown-it, raw HTML off); everyone else's text stays escaped text.
            "thread_html": [
                markdown_to_html(m.body) if m.by_bot and not m.deleted else "" for m in thread
            ],
            "tally": tally,
            "posts": posts,
            "flash": flash(request),
            "error": error,
            "draft": _draft(detail.suggestion if confident else None, draft),
            "reference": None if confident else detail.suggestion,
            "row": row,
            "excerpts": excerpts,
            "bot_names": _bot_names(ctx.settings.matrix_user_id, ctx.settings.local_bot_user),
            "suggestion_html": markdown_to_html(detail.suggestion) if detail.suggestion else "",
            "can_post": ctx.post_reply is not None,
            "is_open": detail.item.status in OPEN_STATUSES,
            "threshold": threshold,
        },
        status=status,
    )


def _draft(suggestion: str | None, typed: str | None) -> str:
    """What the editor holds: what was typed (a failed post keeps it), else the suggestion."""
    return typed if typed is not None else suggestion or ""


def _bot_names(*user_ids: str | None) -> tuple[str, ...]:
    """The bot's localparts: past questions' titles start with "supportbot: " in clients
    that write a mention as the name."""
    return tuple(u[1:].split(":", 1)[0] for u in user_ids if u and u.startswith("@"))


async def question_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _back(request: web.Request, note: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{question_url(_event_id(request))}?flash={note}")


async def _require_question(request: web.Request) -> None:
    if await in_thread(dashboard_store(request).question, _event_id(request)) is None:
        raise web.HTTPNotFound(text="no such question")


async def post_reply(request: web.Request) -> web.StreamResponse:
    user = signed_in_user(request)
    await _require_question(request)
    form = await request.post()
    body = str(form.get("body", "")).replace("\r\n", "\n").strip()
    if not body:
        return await _page(request, draft="", error="The reply is empty.", status=400)
    if len(body) > MAX_POST_CHARS:
        return await _page(
            request,
            draft=body,
            error=f"The reply is too long ({len(body)} characters; at most {MAX_POST_CHARS}).",
            status=400,
        )
    post = context(request).post_reply
    if post is None:
        return await _page(
            request,
            draft=body,
            error="Posting is not available: this dashboard is not connected to a room.",
            status=503,
        )
    event_id = _event_id(request)
    try:
        await post(event_id, body, user)
    except (SupportBotError, LookupError, OSError) as exc:
        # The text stays in the editor: nothing typed is lost to a network hiccup.
        log.warning("posting to %s from the dashboard failed: %s", event_id, exc)
        return await _page(
            request, draft=body, error=f"Could not post to the room: {exc}", status=502
        )
    raise _back(request, "posted")  # post_reply recorded the question as answered by user


async def _triage(
    request: web.Request, change: Callable[[str, str], bool], flash: str
) -> web.StreamResponse:
    """Apply a status change by the signed-in maintainer, then back to the question."""
    if not await in_thread(change, _event_id(request), signed_in_user(request)):
        raise web.HTTPNotFound(text="no such question")
    raise _back(request, flash)


async def mark_answered(request: web.Request) -> web.StreamResponse:
    return await _triage(request, dashboard_store(request).mark_answered, "answered")


async def dismiss(request: web.Request) -> web.StreamResponse:
    return await _triage(request, dashboard_store(request).dismiss, "dismissed")


async def reopen(request: web.Request) -> web.StreamResponse:
    return await _triage(request, dashboard_store(request).reopen, "reopened")


async def vote(request: web.Request) -> web.StreamResponse:
    user = signed_in_user(request)
    form = await request.post()
    value = VOTES.get(str(form.get("vote", "")))
    if value is None:
        raise web.HTTPBadRequest(text="vote must be up, down or none")
    await _require_question(request)
    await in_thread(dashboard_store(request).vote, _event_id(request), user, value)
    raise _back(request, "voted")


def add_question_routes(app: web.Application) -> None:
    app.router.add_get("/questions/{event_id}", question_page)
    app.router.add_post("/questions/{event_id}/post", post_reply)
    app.router.add_post("/questions/{event_id}/answered", mark_answered)
    app.router.add_post("/questions/{event_id}/dismiss", dismiss)
    app.router.add_post("/questions/{event_id}/reopen", reopen)
    app.router.add_post("/questions/{event_id}/vote", vote)
