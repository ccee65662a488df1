"""Jinja2 rendering for the web pages: autoescaped, templates shipped inside the package."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from aiohttp import web

# Set by the auth middleware for a signed-in request; read here for every page.
USER_KEY = web.RequestKey("user", str)
CSRF_KEY = web.RequestKey("csrf_token", str)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    # Autoescape everything: questions, names and answers are user text.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    """Render ``template`` with the signed-in user and CSRF token the auth middleware set."""
    values: dict[str, Any] = {
        "user": request.get(USER_KEY),
        "csrf_token": request.get(CSRF_KEY, ""),
        "path": request.path,
    }
    values.update(context or {})
    html = environment().get_template(template).render(**values)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        charset="utf-8",
    )
