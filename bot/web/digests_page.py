"""The maintainers' digests (``/digests``): every digest posted, newest first, rendered.

In the local room setup this page is where the digest is posted; with a Matrix maintainers'
room it is the history, with where each one went and whether the room took it.
"""

from __future__ import annotations

from aiohttp import web

from bot.answering.render import markdown_to_html
from bot.store.digests import DigestStore
from bot.web.request_helpers import context, in_thread
from bot.web.templating import render

SHOWN = 12


async def digests_page(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    digests = await in_thread(DigestStore(ctx.db).recent, SHOWN)
    return render(
        request,
        "digests.html",
        {
            "digests": digests,
            # The digest is Markdown the bot wrote with every user text escaped; markdown-it
            # with raw HTML off renders it, as it does the bot's replies.
            "html": [markdown_to_html(d.text or "") for d in digests],
            "schedule": ctx.settings.digest_schedule,
            "room": ctx.settings.maintainers_room,
        },
    )


def add_digest_routes(app: web.Application) -> None:
    app.router.add_get("/digests", digests_page)
