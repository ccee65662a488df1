"""The one web application ``supportbot run`` serves: health probes, the maintainers'
dashboard behind a sign-in, its static files and, when the bot runs without a homeserver, the
local room page."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot.store.auth_store import AuthStore
from bot.store.dashboard_store import DashboardStore
from bot.web import formatting
from bot.web.auth import AUTH_STORE_KEY, add_auth_routes, auth_middleware
from bot.web.context import CTX_KEY, WebContext, context_for
from bot.web.dashboard import add_dashboard_routes
from bot.web.health import add_health_routes, start_site
from bot.web.origin import HostRules, make_host_origin_middleware
from bot.web.request_helpers import DASHBOARD_STORE_KEY
from bot.web.templating import environment

if TYPE_CHECKING:
    from bot.room.dashboard_port import DashboardPort
    from bot.store.local_room import LocalRoom

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def add_static_routes(app: web.Application) -> None:
    """``/static/`` once, whoever asks first (the local room's routes may ask too)."""
    if "static" not in app.router.named_resources():
        app.router.add_static("/static/", STATIC_DIR, name="static")


async def _favicon(_request: web.Request) -> web.StreamResponse:
    # Browsers ask for /favicon.ico on their own; answer it instead of bouncing to the login.
    return web.FileResponse(STATIC_DIR / "favicon.svg", headers={"Content-Type": "image/svg+xml"})


async def _insights(request: web.Request) -> web.StreamResponse:
    # Imported on first use: the insights page is its own module with its own imports.
    from bot.web.insights import insights_page

    return await insights_page(request)


def build_app(ctx: WebContext) -> web.Application:
    formatting.register(environment())
    # Host/Origin first: a rebinding page gets nothing, not even the login form.
    host_check = make_host_origin_middleware(HostRules.from_settings(ctx.settings))
    app = web.Application(middlewares=[host_check, auth_middleware], client_max_size=1024**2)
    app[CTX_KEY] = ctx
    app[AUTH_STORE_KEY] = AuthStore(ctx.db)
    app[DASHBOARD_STORE_KEY] = DashboardStore(ctx.db, regulars=ctx.settings.regular_users)
    add_health_routes(app, ctx.metrics, ctx.ready)
    add_static_routes(app)
    app.router.add_get("/favicon.ico", _favicon)
    add_auth_routes(app)
    add_dashboard_routes(app)
    app.router.add_get("/insights", _insights)
    if ctx.local_room is not None:
        from bot.web.room import add_room_routes

        add_room_routes(app)
    return app


class WebServer:
    """Owns the HTTP server ``supportbot run`` serves while the room worker runs (the worker
    starts and closes it: ``bot.room.service.HttpSide``)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> int | None:
        """Serve; the port bound (``port`` 0 picks a free one)."""
        self._runner = await start_site(self.app, self.host, self.port)
        bound: int | None = None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)  # aiohttp exposes no bound port of its own
            for sock in getattr(server, "sockets", None) or ():
                bound = int(sock.getsockname()[1])
        log.info("serving the dashboard and /healthz /readyz /metrics on %s:%s", self.host, bound)
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def web_server_for(port: DashboardPort, *, local_room: LocalRoom | None = None) -> WebServer:
    """The HTTP side of ``supportbot run`` on a worker's dashboard port (``local_room``: the
    embedded room to serve, when the bot runs without a homeserver)."""
    app = build_app(context_for(port, local_room=local_room))
    return WebServer(app, port.settings.web_host, port.settings.web_port)
