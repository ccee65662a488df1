"""The queue in a real browser (Debian's Chromium via Playwright): Matrix ids never wrap
mid-word, and each row says what the bot did. The questions are decided by the real
``RoomService`` in the local room (as in tests/web/test_web_queue_ux.py); the dashboard is the real
app on a real port. The README's queue screenshot comes from here
(``SUPPORTBOT_TEST_SCREENSHOT_DIR=docs pytest tests/integration/test_browser_queue_ux.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.chat.local_transport import LocalTransport
from bot.room.service import RoomService
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.local_room import LocalRoom
from bot.store.room_store import RoomStore
from bot.web.app import build_app
from tests.integration.test_browser import CHROMIUM, CHROMIUM_ARGS, _screenshot, _skip_reason
from tests.web.test_web_queue_ux import answers, ask
from tests.web.web_helpers import PASSWORD, add_question, add_user, make_context

pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

LONG_ASKER = "@a_rather_long_bridged_username_from_gitter:gitter.im"
LONG_ROOM = "!OGEhHVWSdvArJzumhm:matrix.org"


class Served:
    """The dashboard app on 127.0.0.1, its event loop in a thread of its own."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.runner.setup(), self.loop).result(30)
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        asyncio.run_coroutine_threadsafe(site.start(), self.loop).result(30)
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A queue with one question for each thing the bot does; returns the address and the
    event ids by what happened to them."""
    settings = load_settings(
        data_dir=tmp_path,
        serve_http=False,
        reindex_schedule="off",
        index_watch_seconds=0,
        reply_to_unmentioned=True,
    )
    db = Database(settings.resolved_database_url)
    db.create_schema()
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    room.ensure()
    service = RoomService(
        settings,
        LocalTransport(room),
        RoomStore(db),
        answers(
            {
                "how do I stop training early when the validation loss stops improving?": 0.54,
                "How do I freeze the layers of a pretrained model?": (0.91, "Transfer learning"),
                "Why is my loss nan after a few epochs?": 0.31,
                "How do I save a model with a custom layer?": (0.86, "Save and load"),
            }
        ),
    )
    base = int(time.time() * 1000) - 3_600_000  # an hour ago: the README's picture
    ids = {
        "replied_unsure": ask(
            service,
            room,
            "carol",
            "@supportbot how do I stop training early when the validation loss stops improving?",
            base,
        ),
        "replied": ask(
            service, room, "bob", "How do I freeze the layers of a pretrained model?", base + 1
        ),
        "skipped": ask(service, room, "dave", "Why is my loss nan after a few epochs?", base + 2),
        "suggestion_ready": ask(
            service, room, "bob", "How do I save a model with a custom layer?", base + 3
        ),
    }
    service.executor.shutdown()
    ctx = make_context(tmp_path, settings.resolved_database_url)
    add_question(
        ctx.store,
        "$long",
        "Does model.fit() work with tf.data on the JAX backend?",
        sender=LONG_ASKER,
        room=LONG_ROOM,
        ts=base - 1,
        confidence=None,
        status="new",
        suggestion=None,
    )
    ids["long"] = "$long"
    add_user(ctx, "alice")
    served = Served(build_app(ctx))
    try:
        yield served.base, ids
    finally:
        served.close()
        ctx.db.close()
        db.close()


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser.new_context(viewport={"width": 1280, "height": 640}).new_page()
        browser.close()


# Per id element: whether its text is on one line, and whether it is cut (ellipsis).
_ID_LAYOUT = """
els => els.map(el => {
  const style = getComputedStyle(el);
  const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.5;
  return {
    text: el.textContent,
    title: el.getAttribute("title"),
    oneLine: el.getBoundingClientRect().height < line * 1.5,
    cut: el.scrollWidth > el.clientWidth && style.textOverflow === "ellipsis",
  };
})
"""


def test_the_queue_reads_as_what_happened_and_ids_stay_whole(
    dashboard: tuple[str, dict[str, str]], page: Any
) -> None:
    base, ids = dashboard
    page.goto(base + "/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    page.goto(base + "/queue?status=all")

    def status(key: str) -> str:
        text: str = page.locator(f'tr[data-event-id="{ids[key]}"] .status').inner_text()
        return text

    assert status("replied_unsure") == "Replied unsure"
    assert status("replied") == "Replied"
    assert status("skipped") == "Skipped: below threshold"
    assert status("suggestion_ready") == "Suggestion ready"
    assert status("long") == "New"
    why = page.locator(f'tr[data-event-id="{ids["suggestion_ready"]}"] td.confidence')
    assert why.inner_text().split() == ["86%", "top", "page:", "Save", "and", "load"]

    layout = page.locator("table.queue td .id").evaluate_all(_ID_LAYOUT)
    assert layout and all(el["oneLine"] for el in layout), layout
    long = [el for el in layout if el["title"] in (LONG_ASKER, LONG_ROOM)]
    assert {el["text"] for el in long} == {
        "a_rather_long_bridged_username_from_gitter",
        "!OGEhHVWSdvArJzumhm",
    }
    assert any(el["cut"] for el in long), long  # the long localpart ends in an ellipsis
    _screenshot(page, "queue.png")
