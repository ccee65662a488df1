"""``/healthz`` (the process answers), ``/readyz`` (it can serve), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.errors import ConfigError
from bot.metrics import Metrics

ReadyCheck = Callable[[], tuple[bool, str]]
READY_KEY: web.AppKey[ReadyCheck] = web.AppKey("ready")
METRICS_KEY = web.AppKey("metrics", Metrics)


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, why = request.app[READY_KEY]()
    return web.json_response(
        {"status": "ready" if ready else "not ready", "detail": why}, status=200 if ready else 503
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_health_routes(app: web.Application, metrics_: Metrics, ready: ReadyCheck) -> None:
    app[METRICS_KEY] = metrics_
    app[READY_KEY] = ready
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def make_app(metrics_: Metrics, ready: ReadyCheck) -> web.Application:
    """Just the probes (the full app with the dashboard is ``bot.web.app.build_app``)."""
    app = web.Application()
    add_health_routes(app, metrics_, ready)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:  # port taken, address not on this host, no permission
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve on {host}:{port} ({exc.strerror or exc}): another process may be "
            "using it; set SUPPORTBOT_WEB_HOST / SUPPORTBOT_WEB_PORT"
        ) from None
    return runner
