"""Soak: many questions from several users while the homeserver is killed and restarted.

A real Synapse and a real bot subprocess (``python -m bot run``) on the tiny keras-io-mini
index. Several users send N questions in all (default 1000) at a steady overall rate (default
5 per second); the homeserver is SIGKILLed and started again 5 times at random (seeded)
points. While it is down, a sender waits and retries its send with the same transaction id,
so a send that did go through before the kill is not duplicated. At the end every question
must have exactly one bot reply: 0 lost, 0 duplicated.

Slow (minutes): deselected by default. Run by hand::

    pytest -m slow tests/integration/test_soak.py -s                           # N = 1000, 5/s
    SUPPORTBOT_TEST_SOAK_N=100 pytest -m slow tests/integration/test_soak.py -s  # a quick run

Environment: SUPPORTBOT_TEST_SOAK_N (questions), SUPPORTBOT_TEST_SOAK_RATE (questions per
second, all users together), SUPPORTBOT_TEST_SOAK_SEED (restart points and pauses).

The bot runs with its default sync timeout (a 30 s long-poll, as in production) and the room
tests' short backoff (0.2 s doubling to 2 s), so it is back within seconds of each restart.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.room.test_room_service import QUESTIONS, Bot, handled_in, wait_settled
from tests.synapse_server import (
    MatrixHTTPError,
    MatrixUser,
    SynapseError,
    SynapseServer,
)

pytestmark = pytest.mark.slow

RESTARTS = 5
USERS = 4
SEND_GIVE_UP_S = 180.0  # one question's send, retries included
# Errors that mean "the homeserver is down or going down": wait and send again.
_DOWN = (OSError, http.client.HTTPException)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _bot_env(
    synapse: SynapseServer, data: Path, bot_user: MatrixUser, room_id: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        {
            "SUPPORTBOT_DATA_DIR": str(data),
            "SUPPORTBOT_DEVICE": "cpu",
            "SUPPORTBOT_WEB_PORT": "0",
            "SUPPORTBOT_MATRIX_HOMESERVER": synapse.base_url,
            "SUPPORTBOT_MATRIX_USER_ID": bot_user.user_id,
            "SUPPORTBOT_MATRIX_ACCESS_TOKEN": bot_user.access_token,
            "SUPPORTBOT_MATRIX_ROOMS": room_id,
            "SUPPORTBOT_REPLY_THRESHOLD": "0.0",  # the tiny corpus: always answer
            "SUPPORTBOT_USER_COOLDOWN_SECONDS": "0",
            "SUPPORTBOT_ROOM_REPLIES_PER_MINUTE": "1000000",
            "SUPPORTBOT_BACKOFF_INITIAL_SECONDS": "0.2",
            "SUPPORTBOT_BACKOFF_MAX_SECONDS": "2",
            # SUPPORTBOT_SYNC_TIMEOUT_MS: the default 30 s long-poll.
        }
    )
    return env


def _reply_target(event: dict[str, Any]) -> str | None:
    target = event.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {})
    event_id = target.get("event_id") if isinstance(target, dict) else None
    return event_id if isinstance(event_id, str) else None


def _all_messages(synapse: SynapseServer, reader: MatrixUser, room_id: str) -> list[dict[str, Any]]:
    """Every m.room.message of the room (``/messages`` paginated backwards)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(1000):  # 100 a page: room for 100,000 events
        query: dict[str, str | int] = {"dir": "b", "limit": 100}
        if token is not None:
            query["from"] = token
        page = synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{synapse._q(room_id)}/messages",
            user=reader,
            query=query,
        )
        chunk = page.get("chunk", [])
        events.extend(e for e in chunk if e.get("type") == "m.room.message")
        if not chunk or not page.get("end") or page["end"] == token:
            break
        token = page["end"]
    return events


class Observer(threading.Thread):
    """One more user's /sync long-poll: when each bot reply arrives (for latencies).

    Rides out the homeserver's restarts by retrying with the same ``since`` token.
    """

    def __init__(
        self, synapse: SynapseServer, user: MatrixUser, room_id: str, bot_id: str, until: float
    ) -> None:
        super().__init__(name="soak-observer", daemon=True)
        self.synapse = synapse
        self.user = user
        self.room_id = room_id
        self.bot_id = bot_id
        self.until = until  # monotonic deadline: the thread ends by then whatever happens
        self.stop = threading.Event()
        self.arrived: dict[str, float] = {}  # question event id -> first reply seen (monotonic)
        self.errors = 0
        self.filter = json.dumps(
            {
                "presence": {"types": []},
                "account_data": {"types": []},
                "room": {
                    "rooms": [room_id],
                    "timeline": {"limit": 500, "types": ["m.room.message"]},
                    "state": {"types": []},
                    "ephemeral": {"types": []},
                    "account_data": {"types": []},
                },
            }
        )
        self.since: str | None = None

    def poll(self, timeout_ms: int) -> None:
        query: dict[str, str | int] = {"filter": self.filter, "timeout": timeout_ms}
        if self.since is not None:
            query["since"] = self.since
        answer = self.synapse.request(
            "GET", "/_matrix/client/v3/sync", user=self.user, query=query, timeout=30
        )
        now = time.monotonic()
        room = answer.get("rooms", {}).get("join", {}).get(self.room_id, {})
        for event in room.get("timeline", {}).get("events", []):
            if event.get("sender") == self.bot_id:
                target = _reply_target(event)
                if target is not None:
                    self.arrived.setdefault(target, now)
        self.since = answer["next_batch"]

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.until:
            try:
                self.poll(2000)
            except (*_DOWN, MatrixHTTPError):
                self.errors += 1
                self.stop.wait(0.2)


def test_soak_restarts_lose_and_duplicate_nothing(
    synapse: SynapseServer, index_dir: Path, tmp_path: Path
) -> None:
    n = int(_env_number("SUPPORTBOT_TEST_SOAK_N", 1000))
    rate = _env_number("SUPPORTBOT_TEST_SOAK_RATE", 5.0)
    seed = int(_env_number("SUPPORTBOT_TEST_SOAK_SEED", 20261127))
    assert n >= 2 * RESTARTS and rate > 0
    rng = random.Random(seed)

    bot_user = synapse.register("keras-bot-soak")
    users = [synapse.register(f"soak-user-{u}") for u in range(USERS)]
    observer_user = synapse.register("soak-observer")
    room_id = synapse.create_room(users[0])
    for user in [*users[1:], observer_user]:
        synapse.join(user, room_id)

    data = tmp_path / "bot"
    shutil.copytree(index_dir, data / "indexes")
    bot = Bot(data, _bot_env(synapse, data, bot_user, room_id))
    bot.start()

    # Question i goes out at start + i / rate, from user i % USERS; the homeserver restarts
    # once the i-th send is done for each chosen i (spread over the middle of the run).
    restart_after = sorted(rng.sample(range(n // 20, n * 9 // 10), RESTARTS))
    pauses = [rng.uniform(0.5, 3.0) for _ in range(RESTARTS)]  # extra time down
    sent_at: list[float] = [0.0] * n  # monotonic time of the first attempt
    event_ids: list[str | None] = [None] * n
    attempts: list[int] = [0] * n
    done = [0]
    lock = threading.Lock()
    wall0 = time.monotonic()
    observer = Observer(
        synapse, observer_user, room_id, bot_user.user_id, until=wall0 + n / rate + 1800
    )
    observer.start()
    start = time.monotonic() + 1.0

    def send_all(u: int) -> None:
        user = users[u]
        for i in range(u, n, USERS):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = f"{bot_user.localpart}: {QUESTIONS[i % len(QUESTIONS)]} (soak #{i})"
            txn = f"soak-{seed}-{i}"  # the same for every retry of this question
            sent_at[i] = time.monotonic()
            give_up = sent_at[i] + SEND_GIVE_UP_S
            while True:
                attempts[i] += 1
                try:
                    event_ids[i] = synapse.send_text(
                        user, room_id, body, txn_id=txn, mentions=[bot_user.user_id]
                    )
                    break
                except (*_DOWN, MatrixHTTPError) as exc:
                    if isinstance(exc, MatrixHTTPError) and exc.status < 500:
                        raise
                    if time.monotonic() > give_up:
                        raise AssertionError(
                            f"question {i}: no send in {SEND_GIVE_UP_S} s"
                        ) from exc
                    time.sleep(0.2)
            with lock:
                done[0] += 1

    downtime = 0.0
    restarts = 0
    try:
        with ThreadPoolExecutor(max_workers=USERS, thread_name_prefix="soak-user") as pool:
            futures = [pool.submit(send_all, u) for u in range(USERS)]
            for point, pause in zip(restart_after, pauses, strict=True):
                deadline = time.monotonic() + n / rate + 600
                while done[0] < point and time.monotonic() < deadline:
                    if any(f.done() and f.exception() for f in futures):
                        break  # a sender failed: stop restarting, its error follows
                    time.sleep(0.02)
                if done[0] < point:
                    break
                down = time.monotonic()
                synapse.kill()
                time.sleep(pause)
                synapse.start()
                downtime += time.monotonic() - down
                restarts += 1
            for f in futures:
                f.result()  # a sender's error fails the test here
        send_end = time.monotonic()

        # Every question answered? (generous: the bot may still be catching up)
        asked = [e for e in event_ids if e is not None]
        wait_until = time.monotonic() + max(300.0, n * 0.5)
        next_scan = time.monotonic() + 15
        while time.monotonic() < wait_until:
            if all(e in observer.arrived for e in asked):
                break
            assert bot.proc is not None and bot.proc.poll() is None, bot.log()[-3000:]
            if time.monotonic() > next_scan:  # in case the observer missed one
                answered = {
                    _reply_target(e) for e in _all_messages(synapse, observer_user, room_id)
                }
                if answered.issuperset(asked):
                    break
                next_scan = time.monotonic() + 15
            time.sleep(1.0)
        # Settled: every message handled, so a duplicate would have been sent already.
        events = wait_settled(
            lambda: _all_messages(synapse, observer_user, room_id), handled_in(bot), timeout=300
        )
        observer.stop.set()
        observer.join(timeout=60)
        wall = time.monotonic() - wall0

        user_ids = {u.user_id for u in users}
        questions = [e for e in events if e.get("sender") in user_ids]
        replies = [e for e in events if e.get("sender") == bot_user.user_id]
        per_question = Counter(_reply_target(r) for r in replies)
        lost = [e for e in asked if per_question[e] == 0]
        duplicated = [e for e in asked if per_question[e] > 1]
        stray = [t for t in per_question if t not in set(asked)]  # replies to anything else
        latencies_ms = np.asarray(
            [
                (observer.arrived[e] - sent_at[i]) * 1000
                for i, e in enumerate(event_ids)
                if e is not None and e in observer.arrived
            ]
        )
        p50, p99 = np.percentile(latencies_ms, [50, 99]) if latencies_ms.size else (0.0, 0.0)
        retried = sum(1 for a in attempts if a > 1)
        print(
            f"\nsoak: {n} questions from {USERS} users at {rate:g}/s, {len(replies)} replies, "
            f"{len(lost)} lost, {len(duplicated)} duplicated, {restarts} homeserver restarts "
            f"({downtime:.1f} s down, {retried} sends retried), wall {wall:.1f} s "
            f"(sending {send_end - wall0:.1f} s), reply latency p50 {p50:,.0f} ms "
            f"p99 {p99:,.0f} ms ({latencies_ms.size} seen live), seed {seed}"
        )

        assert bot.proc is not None and bot.proc.poll() is None  # it rode out every restart
        assert restarts == RESTARTS
        assert "sync failed" in bot.log()
        assert len(asked) == n
        assert len(set(asked)) == n
        assert sorted(e["event_id"] for e in questions) == sorted(asked)  # no doubled sends
        assert lost == []
        assert duplicated == []
        assert stray == []
        assert len(replies) == n
        assert bot.stop() == 0
    finally:
        observer.stop.set()
        if bot.proc is not None and bot.proc.poll() is None:
            bot.proc.kill()
            bot.proc.wait()
        if not synapse.running:
            with contextlib.suppress(SynapseError):  # keep the test's own error visible
                synapse.start()  # leave the module's server as the fixture expects it
