"""The maintainers' digest for real: two `supportbot run` workers on one PostgreSQL and a real
Synapse, both due for the same scheduled period, post it to the maintainers' room once; a
restart does not post it again; `supportbot digest --post` posts one more, now, with the
room's open questions linked."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.postgres_server import PostgresServer
from tests.room.test_room_service import QUESTIONS, Bot, ask, wait_replies
from tests.room.test_workers import _worker_env
from tests.synapse_server import MatrixUser, SynapseServer


def digests_in(
    synapse: SynapseServer, reader: MatrixUser, room_id: str, bot: MatrixUser
) -> list[str]:
    return [
        e["content"]["body"]
        for e in synapse.messages(reader, room_id, limit=100, event_type="m.room.message")
        if e.get("sender") == bot.user_id
    ]


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_two_workers_post_the_scheduled_digest_once(
    synapse: SynapseServer, postgres: PostgresServer, index_dir: Path, tmp_path: Path
) -> None:
    db_url = postgres.new_database("digest_e2e")
    engine = create_engine(db_url)
    bot_user = synapse.register("keras-bot-digest")
    alice = synapse.register("digest-alice")
    maria = synapse.register("digest-maria")
    room_id = synapse.create_room(alice)
    maintainers_id = synapse.create_room(maria, alias="digest-maintainers")
    alias = f"#digest-maintainers:{synapse.server_name}"

    now = datetime.now(UTC)
    schedule = f"{now.minute} {now.hour} * * *"  # today at this minute: due as they start
    period = now.strftime("%Y-%m-%dT%H:%MZ")
    bots: dict[str, Bot] = {}
    for name in ("worker-a", "worker-b"):
        data = tmp_path / name
        shutil.copytree(index_dir, data / "indexes")
        env = _worker_env(synapse, data, bot_user, room_id, db_url, name)
        env.update(
            {
                "SUPPORTBOT_MAINTAINERS_ROOM": alias,
                "SUPPORTBOT_DIGEST_SCHEDULE": schedule,
                # Never confident: the question gets the closest pages and stays open.
                "SUPPORTBOT_REPLY_THRESHOLD": "1.0",
            }
        )
        bots[name] = Bot(data, env)
    try:
        bots["worker-a"].start()  # the first sync creates the schema and the sync token
        bots["worker-b"].start(wait=False)
        bots["worker-b"].wait_for_log("connected to")
        posted = f"digest for {period} posted to {alias}"
        skipped = f"digest for {period}: already posted or being posted by another worker"
        for bot in bots.values():  # each has decided, one way or the other
            bot.wait_for_log("digest for " + period)
        logs = [bot.log() for bot in bots.values()]
        assert sum(posted in log for log in logs) == 1, logs
        assert sum(skipped in log for log in logs) == 1, logs
        [scheduled] = digests_in(synapse, maria, maintainers_id, bot_user)
        assert scheduled.startswith("# Maintainers' digest, ")

        # A restarted worker finds the period posted.
        assert bots["worker-b"].stop() == 0
        before = bots["worker-b"].log().count(skipped)
        bots["worker-b"].start()
        bots["worker-b"].wait_for_log(skipped, occurrences=before + 1)
        assert len(digests_in(synapse, maria, maintainers_id, bot_user)) == 1

        # A question arrives and waits; `supportbot digest --post` posts one now that lists it.
        question = ask(synapse, alice, room_id, bot_user, QUESTIONS[0])
        wait_replies(synapse, alice, room_id, bot_user, 1)
        wait_for(lambda: _status(engine, question) is not None, "the question stored")
        manual = subprocess.run(
            [sys.executable, "-m", "bot", "digest", "--post"],
            env=bots["worker-a"].env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert manual.returncode == 0, manual.stderr
        assert f"posted to {alias}" in manual.stderr
        digests = digests_in(synapse, maria, maintainers_id, bot_user)
        assert len(digests) == 2 and digests[1] == manual.stdout
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT period, state, room_id FROM digests ORDER BY claimed_at")
            )
            stored = [tuple(r) for r in rows]
            served_rooms = set(conn.scalars(text("SELECT DISTINCT room_id FROM room_events")))
    finally:
        for bot in bots.values():
            bot.stop()
        engine.dispose()
    assert stored[0] == (period, "posted", alias)
    assert stored[1][0].startswith("manual:") and stored[1][1:] == ("posted", alias)
    assert served_rooms == {room_id}  # the maintainers' room is posted to, never served
    assert f"https://matrix.to/#/{room_id}/{question}" in digests[1]
    assert "**first question**" in digests[1]


def _status(engine: Any, event_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.scalar(
            text("SELECT status FROM questions WHERE event_id = :e"), {"e": event_id}
        )
