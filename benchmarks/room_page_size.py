"""The local room's page and poll on a flooded room: 1000 posts of 60 000 bytes each.

Prints the size and the best-of-3 time of ``GET /room`` and of one ``/room/events?since=0``
poll, served by the real app (``build_app``) over SQLite. Run it on this checkout and on an
older one (``PYTHONPATH=OLD python benchmarks/room_page_size.py``) to compare.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

POSTS = 1000
BODY_BYTES = 59_990


async def measure(app: object) -> None:
    async with TestClient(TestServer(app)) as client:  # type: ignore[arg-type]
        for path in ("/room", "/room/events?since=0"):
            best = float("inf")
            size = status = 0
            for _ in range(3):
                started = time.perf_counter()
                response = await client.get(path)
                data = await response.read()
                best = min(best, time.perf_counter() - started)
                size, status = len(data), response.status
            print(f"| `{path}` | {status} | {size / 1e6:.2f} MB | {best:.2f} s |")


def main() -> None:
    from bot.metrics import Metrics
    from bot.settings import load_settings
    from bot.store.database import Database
    from bot.store.local_room import LocalRoom
    from bot.store.room_store import RoomStore
    from bot.web.app import build_app
    from bot.web.context import WebContext

    work = Path(tempfile.mkdtemp())
    db = Database(f"sqlite:///{work / 'room.db'}")
    db.create_schema()
    settings = load_settings(data_dir=work)
    room = LocalRoom(db, settings.local_room_id, settings.local_bot_user)
    body = "x" * BODY_BYTES
    for i in range(POSTS):
        room.post("@alice:supportbot.localhost", f"{i:04d} {body}")
    ctx = WebContext(
        settings=settings,
        db=db,
        store=RoomStore(db),
        metrics=Metrics(),
        ready=lambda: (True, ""),
        local_room=room,
    )
    print(f"code: {sys.modules['bot'].__file__}; load average {os.getloadavg()[0]:.1f}")
    print("| request | status | size | time (best of 3) |\n|---|---|---|---|")
    asyncio.run(measure(build_app(ctx)))


if __name__ == "__main__":
    main()
