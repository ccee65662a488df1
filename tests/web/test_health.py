"""/healthz, /readyz and /metrics on the aiohttp test server."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics
from bot.web.health import make_app


def samples(text: str) -> dict[str, float]:
    return {
        s.name + ("" if not s.labels else str(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_health_readiness_and_metrics() -> None:
    metrics = Metrics()
    state = {"ready": False}

    def ready() -> tuple[bool, str]:
        return state["ready"], "syncing" if state["ready"] else "no successful /sync yet"

    async def scenario() -> None:
        async with TestClient(TestServer(make_app(metrics, ready))) as client:
            assert (await client.get("/healthz")).status == 200
            not_ready = await client.get("/readyz")
            assert not_ready.status == 503
            assert (await not_ready.json())["detail"] == "no successful /sync yet"
            state["ready"] = True
            assert (await client.get("/readyz")).status == 200

            before = samples(await (await client.get("/metrics")).text())
            assert before["supportbot_replies_total"] == 0
            metrics.replies_out.inc()
            metrics.events_in.labels("m.room.message").inc(3)
            metrics.answer_seconds.observe(0.04)
            metrics.watch_queue(lambda: 7)
            metrics.synced()
            response = await client.get("/metrics")
            assert response.headers["Content-Type"].startswith("text/plain")
            after = samples(await response.text())
            assert after["supportbot_replies_total"] == 1
            assert after["supportbot_events_total[('type', 'm.room.message')]"] == 3
            assert after["supportbot_answer_seconds_count"] == 1
            assert after["supportbot_queue_depth"] == 7
            assert 0 <= after["supportbot_sync_lag_seconds"] < 5

    asyncio.run(scenario())


def test_a_port_in_use_is_one_clear_error() -> None:
    import socket

    import pytest

    from bot.errors import ConfigError
    from bot.web.health import start_site

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def scenario() -> None:
            app = make_app(Metrics(), lambda: (True, "ok"))
            with pytest.raises(ConfigError, match=f"cannot serve on 127.0.0.1:{port}"):
                await start_site(app, "127.0.0.1", port)

        asyncio.run(scenario())
