"""A real browser (Debian's Chromium, driven by Playwright) against a real `supportbot run`.

The bot runs as a subprocess in local-room mode (no homeserver) on a small real index; a user
asks in the room page, a maintainer signs in, sees what the bot did ("Replied unsure"), writes
an answer (the unsure suggestion is not prefilled) and posts it, and the answer shows up in
the room's thread. Also: hostile question text renders as text, a
POST without the CSRF token is refused, a signed-out visit goes to the login page.

A screenshot of the question page goes to SUPPORTBOT_TEST_SCREENSHOT_DIR (the README's comes
from ``SUPPORTBOT_TEST_SCREENSHOT_DIR=docs pytest tests/integration/test_browser.py``; the
queue's from tests/integration/test_browser_queue_ux.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# As root in a container, and on a machine with no route out: no sandbox, no background
# fetches (each refused connection would be logged and retried).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "correct horse battery"
QUESTION = "How do I stop training early when the validation loss stops improving?"
HOSTILE = "<img src=x onerror=alert(1)>"
EDITED = "Use the `EarlyStopping` callback with `monitor='val_loss'` (edited by alice)."


def _skip_reason() -> str | None:
    if os.environ.get("SUPPORTBOT_TEST_REQUIRE_BROWSER") == "1":
        return None
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not installed (Debian package chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright (PyPI) not installed"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class RunningBot:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.log_path = data / "bot.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
        self.env.update(
            {
                "SUPPORTBOT_DATA_DIR": str(data),
                "SUPPORTBOT_DEVICE": "cpu",
                "SUPPORTBOT_WEB_PORT": "0",
                "SUPPORTBOT_ROOM_TRANSPORT": "local",
                "SUPPORTBOT_REINDEX_SCHEDULE": "off",
                "SUPPORTBOT_SYNC_TIMEOUT_MS": "2000",
                # Never sure enough to answer alone: every question waits in the open queue
                # with a suggestion, and the room gets the "passed to the maintainers" note.
                "SUPPORTBOT_REPLY_THRESHOLD": "0.99",
                "SUPPORTBOT_USER_COOLDOWN_SECONDS": "0",
                "HF_HUB_OFFLINE": "1",
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = ""

    def add_user(self, name: str) -> None:
        done = subprocess.run(
            [_bin("supportbot"), "users", "add", name],
            input=PASSWORD + "\n",
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr

    def start(self, timeout: float = 180) -> None:
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [_bin("supportbot"), "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Local room: (http://[^/\s]+)/room", self.log())
            if found:
                self.base = found.group(1)
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"bot exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"the bot never served the room:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def bot(tmp_path: Path, index_dir: Path) -> Iterator[RunningBot]:
    data = tmp_path / "data"
    shutil.copytree(index_dir, data / "indexes")
    running = RunningBot(data)
    running.add_user("alice")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def _screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("SUPPORTBOT_TEST_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _ask_in_room(page: Any, name: str, text: str) -> str:
    """Post in the room page; return the new message's event id."""
    page.fill("#post-name", name)
    page.fill("#post-body", text)
    before = page.locator("#timeline > li.root").count()
    page.click("#post-form button[type=submit]")
    page.locator("#timeline > li.root").nth(before).wait_for(timeout=30_000)
    message = page.locator("#timeline > li.root").filter(has_text=text).last
    event_id = message.get_attribute("data-event-id")
    assert event_id
    return event_id


def test_question_from_the_room_is_edited_and_posted_by_a_maintainer(
    bot: RunningBot, browser: Any, tmp_path: Path
) -> None:
    dialogs: list[str] = []

    room = browser.new_context().new_page()
    room.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    room.goto(bot.base + "/room")
    question_id = _ask_in_room(room, "carol", QUESTION)
    hostile_id = _ask_in_room(room, "mallory", HOSTILE)

    # The bot answers in the question's thread (live, without a reload): not sure enough to
    # answer alone, it says the question went to the maintainers.
    bot_note = room.locator(f'li[data-event-id="{question_id}"] .thread li.bot')
    bot_note.first.wait_for(timeout=60_000)
    assert "maintainers" in bot_note.first.inner_text()
    hostile = room.locator(
        f'li[data-event-id="{hostile_id}"] > .body, li[data-event-id="{hostile_id}"] .body'
    ).first
    assert hostile.inner_text().strip() == HOSTILE
    assert room.locator(f'li[data-event-id="{hostile_id}"] img').count() == 0

    # A signed-out visit to the dashboard goes to the login page.
    dash = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    dash.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    dash.goto(bot.base + "/queue")
    assert "/login" in dash.url
    dash.fill("#name", "alice")
    dash.fill("#password", PASSWORD)
    with dash.expect_navigation():
        dash.click("form[action='/login'] button[type=submit]")
    assert urlsplit(dash.url).path == "/queue", (dash.url, dash.content()[:2000])

    # Both questions are in the queue; the hostile one is text, not markup.
    row = dash.locator(f'tr[data-event-id="{question_id}"]')
    row.wait_for(timeout=30_000)
    hostile_row = dash.locator(f'tr[data-event-id="{hostile_id}"]')
    hostile_row.wait_for(timeout=30_000)
    assert HOSTILE in hostile_row.locator("td.text").inner_text()
    assert hostile_row.locator("img").count() == 0
    # What happened, in words: the bot replied, unsure; the asker by name, the id on hover.
    # (The bot records its decision just after the note reaches the room: reload until then.)
    deadline = time.monotonic() + 30
    while "Replied unsure" not in row.locator(".status").inner_text():
        assert time.monotonic() < deadline, row.inner_html()
        dash.reload()
        row.wait_for(timeout=30_000)
    assert "unsure: below 99%" in row.locator("td.confidence").inner_text()
    asker = row.locator("td.asker .id")
    assert asker.inner_text() == "carol"
    assert asker.get_attribute("title") == "@carol:supportbot.localhost"

    # A question asked while the queue is open appears in it without a reload.
    late_id = _ask_in_room(room, "dave", "Which optimizer should I use for fine-tuning BERT?")
    dash.locator(f'tr[data-event-id="{late_id}"]').wait_for(timeout=30_000)

    # The question page: the bot was unsure, so the editor starts empty and its suggestion
    # is beside it to copy from; write the answer and post it.
    row.locator("td.text a").click()
    dash.wait_for_url(re.compile(r".*/questions/.*"))
    editor = dash.locator("#reply-body")
    assert editor.input_value() == "", "an unsure suggestion is not prefilled"
    assert dash.locator("#reference").input_value().startswith("I'm not sure")
    _screenshot(dash, "question.png")
    editor.fill(EDITED)
    dash.click("button:has-text('Post to thread')")
    dash.locator(".flash").wait_for(timeout=30_000)
    assert "Answered" in dash.content() or "answered" in dash.locator(".flash").inner_text()

    # The edited answer is in the room's thread, posted as the bot.
    room.reload()
    posted = room.locator(f'li[data-event-id="{question_id}"] .thread li.bot').filter(
        has_text="edited by alice"
    )
    posted.first.wait_for(timeout=30_000)

    # The hostile question's own page shows it as text too.
    dash.goto(bot.base + f"/questions/{hostile_id}")
    assert HOSTILE in dash.locator("main").inner_text()
    assert dash.locator("main img").count() == 0

    # A POST without the CSRF token (but with the session cookie) is refused.
    refused = dash.request.post(
        bot.base + f"/questions/{question_id}/dismiss", form={}, max_redirects=0
    )
    assert refused.status == 403
    forged = dash.request.post(
        bot.base + f"/questions/{question_id}/dismiss",
        form={"csrf_token": "not-the-token"},
        max_redirects=0,
    )
    assert forged.status == 403
    dash.goto(bot.base + f"/questions/{question_id}")
    assert "Dismissed" not in dash.locator(".status").first.inner_text()

    assert dialogs == [], "no script from user text ran"


def test_core_flows_work_without_javascript(bot: RunningBot, browser: Any) -> None:
    """Sign in, ask in the room, open the question, dismiss it: forms and redirects only."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(bot.base + "/room")
    page.fill("#post-name", "nojs")
    page.fill("#post-body", "How do I save a model to disk?")
    with page.expect_navigation():
        page.click("#post-form button[type=submit]")
    question = page.locator("#timeline > li.root").filter(has_text="save a model to disk").last
    question_id = question.get_attribute("data-event-id")
    assert question_id

    page.goto(bot.base + "/login")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    # The bot stores the question a moment after the post: refresh the queue until it's there.
    row = page.locator(f'tr[data-event-id="{question_id}"]')
    deadline = time.monotonic() + 60
    while row.count() == 0 and time.monotonic() < deadline:
        page.goto(bot.base + "/queue")
        time.sleep(0.5)
    assert row.count() == 1
    with page.expect_navigation():
        row.locator("td.text a").click()
    with page.expect_navigation():
        page.click("button:has-text('Dismiss')")
    assert "Dismissed" in page.locator("main").inner_text()
    context.close()
