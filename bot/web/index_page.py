"""The index page: what the bot is searching right now, how it was built, the last rebuild,
and a button to rebuild now."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from bot.web.request_helpers import context, dashboard_store, flash, in_thread
from bot.web.templating import render


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


async def index_page(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    manifest: dict[str, Any] = ctx.index_manifest() if ctx.index_manifest else {}
    last_build = await in_thread(dashboard_store(request).last_build)
    sources = manifest.get("sources")
    inputs = manifest.get("build_inputs")
    return render(
        request,
        "index_page.html",
        {
            "manifest": manifest,
            "built_at": _parse_time(manifest.get("built_at")),
            "sources": sorted(sources.items()) if isinstance(sources, dict) else [],
            "inputs": sorted(inputs.items()) if isinstance(inputs, dict) else [],
            "last_build": last_build,
            "last_build_at": _parse_time((last_build or {}).get("at")),
            "can_rebuild": ctx.rebuild is not None,
            "flash": flash(request),
        },
    )


async def rebuild(request: web.Request) -> web.StreamResponse:
    start = context(request).rebuild
    if start is None:
        raise web.HTTPConflict(
            text="Rebuilding from the dashboard needs the running bot with a re-index job "
            "configured; use `supportbot index build` instead."
        )
    await start()
    raise web.HTTPSeeOther("/index?flash=rebuild-started")


def add_index_routes(app: web.Application) -> None:
    app.router.add_get("/index", index_page)
    app.router.add_post("/index/rebuild", rebuild)
