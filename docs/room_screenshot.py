"""Make the README's local-room screenshot (docs/room.png) against a running bot.

    supportbot run            # the local room, e.g. on http://127.0.0.1:8080/room
    python docs/room_screenshot.py http://127.0.0.1:8080/room docs/room.png

Posts the README's two example questions as "newcomer", waits for both replies and saves a
full-page screenshot. Uses Debian's Chromium (/usr/bin/chromium) through Playwright; start
from a fresh data dir, or the room's earlier messages show too.
"""

from __future__ import annotations

import sys
import time

from playwright.sync_api import sync_playwright

QUESTIONS = (
    "How do I stop training when the validation loss stops improving?",
    "my old code model.fit_generator(gen, steps_per_epoch=10) raises AttributeError: "
    "'Sequential' object has no attribute 'fit_generator'",
)


def main(url: str, out: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(url)
        page.fill("#post-name", "newcomer")
        for n, question in enumerate(QUESTIONS, start=1):
            page.fill("#post-form textarea", question)
            page.click("#post-form button[type=submit]")
            # The page's CSP forbids eval, so poll from here: each reply ends "Confidence: N%".
            deadline = time.monotonic() + 60
            while page.inner_text("#timeline").count("Confidence:") < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no reply to question {n} within 60 s")
                time.sleep(0.5)
        time.sleep(2)  # let the last reply's layout settle
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:3])
