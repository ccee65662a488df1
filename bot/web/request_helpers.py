"""What every dashboard handler reaches for: the context, the stores, the user, flash notes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from bot.store.dashboard_store import DashboardStore
from bot.web.context import CTX_KEY, WebContext
from bot.web.templating import USER_KEY

T = TypeVar("T")

DASHBOARD_STORE_KEY = web.AppKey("dashboard_store", DashboardStore)

# Flash notes travel as a key in the redirect's query string, never as text: a crafted link
# cannot put words on the page.
FLASH_MESSAGES = {
    "posted": "Posted to the thread.",
    "answered": "Marked as answered.",
    "dismissed": "Dismissed.",
    "reopened": "Back in the queue.",
    "voted": "Thanks, your vote is recorded.",
    "rebuild-started": "Rebuild started; the new index is swapped in when it is ready.",
    "approved": "Approved; the answer is searchable after the next index update.",
    "rejected": "Rejected; the bot will not offer it.",
    "review-gone": "That answer is no longer waiting for a review (decided or replaced).",
}


def context(request: web.Request) -> WebContext:
    return request.app[CTX_KEY]


def dashboard_store(request: web.Request) -> DashboardStore:
    return request.app[DASHBOARD_STORE_KEY]


def signed_in_user(request: web.Request) -> str:
    """The signed-in maintainer; the auth middleware guarantees one on dashboard routes."""
    user = request.get(USER_KEY)
    if user is None:
        raise web.HTTPForbidden(text="sign in first")
    return user


def flash(request: web.Request) -> str | None:
    return FLASH_MESSAGES.get(request.query.get("flash", ""))


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Database calls run off the event loop, as the service's own do."""
    return await asyncio.to_thread(fn, *args, **kwargs)
