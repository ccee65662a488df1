"""“Try it”: ask the bot a question and see what it would reply, with its ranked sources.

Nothing is stored or posted. The question runs in the service's CPU worker (``run_cpu``), the
same thread the room's questions use, so a maintainer's query never races the model.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from bot.answering.render import markdown_to_html
from bot.answering.reply import SuggestedReply
from bot.errors import SupportBotError
from bot.web.request_helpers import context
from bot.web.templating import render

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000


async def _ask(request: web.Request, question: str) -> SuggestedReply:
    ctx = context(request)
    answer = ctx.answer
    if answer is None:
        raise LookupError("no index is loaded, so the bot cannot answer yet")

    def run() -> SuggestedReply:
        return answer(question)

    if ctx.run_cpu is not None:
        reply: SuggestedReply = await ctx.run_cpu(run)
        return reply
    return await asyncio.to_thread(run)


async def try_page(request: web.Request) -> web.StreamResponse:
    if request.method == "POST":
        form = await request.post()
        question = str(form.get("q", ""))
    else:
        question = request.query.get("q", "")
    question = question.strip()
    values: dict[str, Any] = {
        "question": question,
        "reply": None,
        "reply_html": "",
        "error": None,
        "available": context(request).answer is not None,
        "threshold": context(request).settings.reply_threshold,
    }
    status = 200
    if len(question) > MAX_QUESTION_CHARS:
        values["error"] = f"The question is too long (at most {MAX_QUESTION_CHARS} characters)."
        status = 400
    elif question:
        try:
            reply = await _ask(request, question)
        except (SupportBotError, LookupError) as exc:
            log.warning("try it: %s", exc)
            values["error"] = str(exc)
            status = 503
        else:
            values["reply"] = reply
            # The renderer escapes any HTML in the text: raw HTML is never passed through.
            values["reply_html"] = markdown_to_html(reply.markdown)
    return render(request, "try.html", values, status=status)


def add_try_routes(app: web.Application) -> None:
    app.router.add_get("/try", try_page)
    app.router.add_post("/try", try_page)
