"""Past answers waiting for a maintainer (``/past-answers``): pairs an asker accepted with a
reaction, which anyone with a second account could plant, are indexed only once approved."""

from __future__ import annotations

from aiohttp import web

from bot.store.past_answers import PastAnswerStore
from bot.web.request_helpers import context, flash, in_thread, signed_in_user
from bot.web.templating import render

_DECISIONS = {"approve": True, "reject": False}


def _store(request: web.Request) -> PastAnswerStore:
    return PastAnswerStore(context(request).db)


async def pending_page(request: web.Request) -> web.StreamResponse:
    pairs = await in_thread(_store(request).pending)
    return render(request, "past_answers.html", {"pairs": pairs, "flash": flash(request)})


async def review(request: web.Request) -> web.StreamResponse:
    user = signed_in_user(request)
    form = await request.post()
    key = str(form.get("key", ""))
    decision = _DECISIONS.get(str(form.get("decision", "")))
    if not key or decision is None:
        raise web.HTTPBadRequest(text="decision must be approve or reject, for a pair's key")
    done = await in_thread(_store(request).review, key, approve=decision, user=user)
    if not done:
        raise web.HTTPSeeOther("/past-answers?flash=review-gone")
    notify = context(request).past_answers_changed
    if decision and notify is not None:
        notify()  # searchable after the next quick re-publish
    raise web.HTTPSeeOther(f"/past-answers?flash={'approved' if decision else 'rejected'}")


def add_past_answer_routes(app: web.Application) -> None:
    app.router.add_get("/past-answers", pending_page)
    app.router.add_post("/past-answers/review", review)
