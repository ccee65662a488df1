"""The dashboard's Digests page: behind the sign-in, every digest rendered newest first with
where it went, a refused one marked, and nothing a question's text holds becoming markup."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.room.digest_job import DigestJob
from bot.room.timing import StopSignal
from bot.store.digests import DigestStore
from bot.web.formatting import question_url
from tests.web.web_helpers import add_question, add_user, make_context, serve, signed_in

Client = TestClient[Any, Any]


def test_the_digests_page_shows_each_digest_rendered(tmp_path: Path, database_url: str) -> None:
    ctx = make_context(tmp_path, database_url, settings={"digest_schedule": "0 8 * * 1"})
    add_user(ctx)
    now_ms = int(time.time() * 1000)
    add_question(ctx.store, "$q1", "<script>alert(1)</script> why **nan**?", ts=now_ms - 3_600_000)
    digests = DigestStore(ctx.db)
    job = DigestJob(
        ctx.settings,
        ctx.db,
        StopSignal(),
        worker_id="w",
        link=lambda q: question_url(q.event_id),
    )
    assert asyncio.run(job.post("2026-11-23T08:00Z")) is not None
    assert digests.claim("2026-11-30T08:00Z", "w", lease=timedelta(minutes=2)) is not None
    digests.set_text("2026-11-30T08:00Z", "# Refused one", "#maintainers:example.org")
    digests.mark_failed("2026-11-30T08:00Z", "M_FORBIDDEN: not invited")

    async def scenario(client: Client) -> None:
        anonymous = await client.get("/digests", allow_redirects=False)
        assert anonymous.status in (302, 303)
        await signed_in(client)
        page = await client.get("/digests")
        assert page.status == 200
        html = await page.text()
        assert 'href="/digests" class="active"' in html
        assert "Posted on the schedule <code>0 8 * * 1</code>" in html
        # Newest first: the refused one, then the posted one.
        assert html.index("Period 2026-11-30T08:00Z") < html.index("Period 2026-11-23T08:00Z")
        assert "<strong>Not posted</strong>: #maintainers:example.org refused it" in html
        assert "<h1>Maintainers' digest" in html and "<h2>Still unanswered (1" in html
        assert f'href="{question_url("$q1")}"' in html  # the question's own dashboard page
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<strong>nan</strong>" not in html  # its Markdown stays text

    serve(ctx, scenario)
