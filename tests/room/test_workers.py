"""Several workers on one database: they share the rooms' work, never both answer a question,
and a worker that dies leaves its questions to the others once its lease runs out.

First RoomService units (in-memory transports, a real store on SQLite and PostgreSQL), then
the real thing: two `supportbot run` processes on one PostgreSQL and a real Synapse, one of
them SIGKILLed mid-way.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from bot.answering.reply import SuggestedReply
from bot.chat.transport import OutgoingReply, SyncBatch
from bot.errors import TransientError
from bot.room.claims import dead_local_workers
from bot.room.service import RoomService
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.models import RoomEventRow
from bot.store.room_store import RoomStore
from tests.integration.test_soak import _all_messages, _reply_target
from tests.postgres_server import PostgresServer
from tests.room.test_room_service import QUESTIONS, Bot, wait_settled
from tests.room.test_service_units import ALICE, BOB, FakeAnswer, FakeTransport, event
from tests.synapse_server import MatrixUser, SynapseServer


# --- units: RoomService with claims --------------------------------------------------------------
@pytest.fixture
def make_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., RoomService]]:
    """RoomServices on one database, each with its own connections (as separate processes)."""
    databases: list[Database] = []
    executors: list[ThreadPoolExecutor] = []

    def factory(
        worker_id: str | None,
        transport: FakeTransport | None = None,
        answer: Callable[[str], SuggestedReply] | None = None,
        **settings: Any,
    ) -> RoomService:
        db = Database(database_url)
        db.create_schema()
        databases.append(db)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"answer-{worker_id}")
        executors.append(executor)
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "worker_id": worker_id,
            "claim_lease_seconds": 2.0,
            "user_cooldown_seconds": 0.0,
            "room_replies_per_minute": 1000,
            "backoff_initial_seconds": 0.001,
            "backoff_max_seconds": 0.004,
            **settings,
        }
        return RoomService(
            load_settings(**values),
            transport or FakeTransport(),
            RoomStore(db),
            answer or FakeAnswer(),
            executor=executor,
        )

    yield factory
    for executor in executors:
        executor.shutdown(wait=True, cancel_futures=True)
    for db in databases:
        db.close()


def transport_of(service: RoomService) -> FakeTransport:
    assert isinstance(service.transport, FakeTransport)
    return service.transport


def sample(service: RoomService, name: str) -> float | None:
    return service.metrics.registry.get_sample_value(name)


def run_until(condition: Callable[[], bool], *services: RoomService, limit: float = 60) -> None:
    """Run the services side by side in one loop until the condition holds, then stop them."""

    async def go() -> None:
        tasks = [asyncio.create_task(s.run()) for s in services]
        try:
            deadline = time.monotonic() + limit
            while not condition():
                assert time.monotonic() < deadline, "the services did not get there"
                for task in tasks:
                    if task.done():
                        task.result()  # a crashed service fails the test with its error
                await asyncio.sleep(0.02)
        finally:
            for s in services:
                s.request_stop()
            await asyncio.gather(*tasks)

    asyncio.run(go())


def handled_by(store: RoomStore) -> dict[str, str | None]:
    with store.db.session() as s:
        rows = s.execute(
            select(RoomEventRow.event_id, RoomEventRow.claimed_by).where(
                RoomEventRow.handled_at.is_not(None)
            )
        )
        return {event_id: worker for event_id, worker in rows}


def test_two_workers_share_one_backlog_and_send_each_reply_once(
    make_worker: Callable[..., RoomService],
) -> None:
    questions = [
        event(f"$q{i:02d}", f"keras-bot: question {i}?", sender=(ALICE, BOB)[i % 2], ts=i)
        for i in range(30)
    ]
    workers = []
    for name in ("w1", "w2"):
        transport = FakeTransport()
        # Both sync the room and get the same batch, as two processes on one account do.
        transport.batches = [SyncBatch(next_token="s1", events=tuple(questions))]
        workers.append(make_worker(name, transport, FakeAnswer(delay=0.02)))

    def sent() -> list[OutgoingReply]:
        return [r for w in workers for r in transport_of(w).sent]

    run_until(lambda: len(sent()) >= len(questions), *workers)
    # Every question answered once, by one worker: no reply was even attempted twice.
    assert sorted(r.reply_to for r in sent()) == [q.event_id for q in questions]
    attempts = [r.reply_to for w in workers for r in transport_of(w).attempts]
    assert sorted(attempts) == [q.event_id for q in questions]
    by = handled_by(workers[0].store)
    assert {by[q.event_id] for q in questions} <= {"w1", "w2"}
    for w in workers:  # each one handled exactly what it sent
        mine = {e for e, worker in by.items() if worker == w.worker_id}
        assert {r.reply_to for r in transport_of(w).sent} <= mine


def test_a_dead_workers_claim_is_taken_over_after_its_lease(
    make_worker: Callable[..., RoomService],
) -> None:
    service = make_worker("me")
    store = service.store
    dead, alive, free = event("$dead", ts=1), event("$alive", ts=2), event("$free", ts=3)
    store.persist_batch([dead, alive, free], None)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    assert store.claim_event("$dead", "crashed-worker", 60, now=long_ago)  # lease ran out
    assert store.claim_event("$alive", "busy-worker", 3600)  # a live worker holds this one
    transport = transport_of(service)
    run_until(lambda: len(transport.sent) >= 2, service)
    assert sorted(r.reply_to for r in transport.sent) == ["$dead", "$free"]
    assert handled_by(store) == {"$dead": "me", "$free": "me"}
    assert store.claim_holders() == {"busy-worker"}  # never touched
    assert sample(service, "supportbot_claims_taken_over_total") == 1


def test_claim_held_elsewhere_is_skipped_and_counted(
    make_worker: Callable[..., RoomService],
) -> None:
    service = make_worker("me")
    e = event()
    service.store.persist_batch([e], None)
    assert service.store.claim_event(e.event_id, "other", 3600)

    async def go() -> bool:
        await service.queue.put(e)  # queued here, as the sweeper or the reader does
        return await service.claims.claim(e)

    assert asyncio.run(go()) is False
    assert e.event_id not in service.queue  # a later sweep may offer it again
    assert sample(service, "supportbot_claims_lost_total") == 1


def test_lease_is_renewed_while_handling(make_worker: Callable[..., RoomService]) -> None:
    rival = make_worker("rival").store
    rival_tries: list[bool] = []

    class SlowAnswer(FakeAnswer):
        def __call__(self, question: str) -> SuggestedReply:
            # Much longer than the lease; the rival keeps trying to take the event over.
            for _ in range(8):
                time.sleep(0.25)
                rival_tries.append(rival.claim_event("$q1", "rival", 0.6))
            return super().__call__(question)

    service = make_worker("me", answer=SlowAnswer(), claim_lease_seconds=0.6)
    service.store.persist_batch([event()], None)
    transport = transport_of(service)
    run_until(lambda: len(transport.sent) >= 1, service)
    assert rival_tries == [False] * 8
    assert handled_by(service.store) == {"$q1": "me"}


def test_stop_mid_send_gives_the_claim_back(make_worker: Callable[..., RoomService]) -> None:
    class DownTransport(FakeTransport):
        async def send_reply(self, reply: OutgoingReply) -> str:
            self.attempts.append(reply)
            service.request_stop()
            raise TransientError("homeserver down")

    service = make_worker("me", DownTransport())
    service.store.persist_batch([event()], None)
    run_until(lambda: bool(transport_of(service).attempts), service)
    with service.store.db.session() as s:
        row = s.get(RoomEventRow, "$q1")
        assert row is not None
        assert (row.handled_at, row.claimed_by) == (None, None)  # anyone may take it now
    assert [r.question_event_id for r in service.store.pending_replies()] == ["$q1"]


def test_restart_releases_the_claims_of_its_dead_predecessor(
    make_worker: Callable[..., RoomService],
) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    predecessor = f"{socket.gethostname()}-{gone.pid}"  # an earlier `supportbot run`, now dead
    service = make_worker(None, claim_lease_seconds=3600)  # the default id: host and pid
    assert service.worker_id == f"{socket.gethostname()}-{os.getpid()}"
    service.store.persist_batch([event()], None)
    assert service.store.claim_event("$q1", predecessor, 3600)  # SIGKILLed while handling it
    transport = transport_of(service)
    run_until(lambda: len(transport.sent) >= 1, service)
    assert handled_by(service.store) == {"$q1": service.worker_id}


def test_dead_local_workers() -> None:
    host = socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    me = f"{host}-{os.getpid()}"
    holders = [
        me,
        f"{host}-{gone.pid}",  # an earlier process on this host, no longer running
        f"{host}-{os.getppid()}",  # running
        f"elsewhere-{gone.pid}",  # another host: not ours to judge
        "worker-a",  # a configured name
        f"{host}-notapid",
    ]
    assert dead_local_workers(holders, me) == [f"{host}-{gone.pid}"]


# --- two `supportbot run` processes, one PostgreSQL, a real Synapse ------------------------------
N_QUESTIONS = 200
USERS = 4
LEASE_S = 5


def handled_on(engine: Engine) -> Callable[[], tuple[set[str], int]]:
    """``wait_settled``'s view of the workers' shared database."""

    def read() -> tuple[set[str], int]:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT event_id, handled_at IS NOT NULL FROM room_events")
            ).all()
        return {e for e, done in rows if done}, sum(1 for _, done in rows if not done)

    return read


def _worker_env(
    synapse: SynapseServer, data: Path, bot_user: MatrixUser, room_id: str, db_url: str, name: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env.update(
        {
            "SUPPORTBOT_DATA_DIR": str(data),
            "SUPPORTBOT_DATABASE_URL": db_url,
            "SUPPORTBOT_WORKER_ID": name,
            "SUPPORTBOT_CLAIM_LEASE_SECONDS": str(LEASE_S),
            "SUPPORTBOT_DEVICE": "cpu",
            "SUPPORTBOT_WEB_PORT": "0",
            "SUPPORTBOT_MATRIX_HOMESERVER": synapse.base_url,
            "SUPPORTBOT_MATRIX_USER_ID": bot_user.user_id,
            "SUPPORTBOT_MATRIX_ACCESS_TOKEN": bot_user.access_token,
            "SUPPORTBOT_MATRIX_ROOMS": room_id,
            "SUPPORTBOT_REPLY_THRESHOLD": "0.0",  # the tiny corpus: always answer
            "SUPPORTBOT_SYNC_TIMEOUT_MS": "2000",
            "SUPPORTBOT_USER_COOLDOWN_SECONDS": "0",
            "SUPPORTBOT_ROOM_REPLIES_PER_MINUTE": "1000000",
            "SUPPORTBOT_BACKOFF_INITIAL_SECONDS": "0.2",
            "SUPPORTBOT_BACKOFF_MAX_SECONDS": "2",
            "SUPPORTBOT_REINDEX_SCHEDULE": "off",
        }
    )
    return env


def test_two_workers_one_killed_every_question_answered_once(
    synapse: SynapseServer,
    postgres: PostgresServer,
    index_dir: Path,
    tmp_path: Path,
) -> None:
    db_url = postgres.new_database("workers_e2e")
    engine = create_engine(db_url)
    bot_user = synapse.register("keras-bot-workers")
    users = [synapse.register(f"workers-user-{u}") for u in range(USERS)]
    room_id = synapse.create_room(users[0])
    for user in users[1:]:
        synapse.join(user, room_id)

    bots: dict[str, Bot] = {}
    for name in ("worker-a", "worker-b"):
        data = tmp_path / name
        shutil.copytree(index_dir, data / "indexes")  # each worker serves its own index copy
        bots[name] = Bot(data, _worker_env(synapse, data, bot_user, room_id, db_url, name))

    def replied_by() -> Counter[str]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT claimed_by, count(*) FROM room_events WHERE handled_at IS NOT NULL"
                    " AND outcome LIKE 'replied%' GROUP BY claimed_by"
                )
            )
            return Counter({worker: int(n) for worker, n in rows})

    try:
        bots["worker-a"].start()  # the first sync: it creates the schema and the sync token
        bots["worker-b"].start(wait=False)
        bots["worker-b"].wait_for_log("connected to")

        asked: list[str] = []
        send_error: list[BaseException] = []

        def send_all() -> None:
            try:
                for i in range(N_QUESTIONS):
                    body = f"{bot_user.localpart}: {QUESTIONS[i % len(QUESTIONS)]} (#{i})"
                    asked.append(
                        synapse.send_text(
                            users[i % USERS], room_id, body, mentions=[bot_user.user_id]
                        )
                    )
            except BaseException as exc:  # reported by the test thread
                send_error.append(exc)

        started = time.monotonic()
        sender = threading.Thread(target=send_all, name="workers-sender")
        sender.start()

        # Kill one worker once about a third of the questions are answered: the busier one,
        # so that both have answered some whatever way the work happened to split.
        deadline = time.monotonic() + 300
        while sum(replied_by().values()) < N_QUESTIONS // 3:
            assert time.monotonic() < deadline, replied_by()
            for bot in bots.values():
                assert bot.proc is not None and bot.proc.poll() is None, bot.log()[-3000:]
            time.sleep(0.2)
        at_kill = replied_by()
        victim = max(bots, key=lambda name: at_kill[name])
        survivor = next(name for name in bots if name != victim)
        bots[victim].kill()
        killed_at = time.monotonic()
        with engine.connect() as conn:
            in_hand = list(
                conn.scalars(
                    text(
                        "SELECT event_id FROM room_events WHERE handled_at IS NULL"
                        " AND claimed_by = :victim"
                    ),
                    {"victim": victim},
                )
            )
        sender.join(timeout=300)
        assert not send_error, send_error
        assert len(asked) == N_QUESTIONS

        answered: set[str | None] = set()
        deadline = time.monotonic() + 300
        while not answered.issuperset(asked):
            assert time.monotonic() < deadline, f"{len(answered & set(asked))} answered"
            survivor_proc = bots[survivor].proc
            assert survivor_proc is not None and survivor_proc.poll() is None
            time.sleep(2)
            answered = {_reply_target(e) for e in _all_messages(synapse, users[0], room_id)}
        all_answered_s = time.monotonic() - started
        # Settled: every message handled (the dead worker's claims taken over once their lease
        # ran out, the replies that came back ignored), so no second reply can come now.
        events = wait_settled(
            lambda: _all_messages(synapse, users[0], room_id), handled_on(engine), timeout=300
        )
        replies = [e for e in events if e.get("sender") == bot_user.user_id]
        per_question = Counter(_reply_target(r) for r in replies)
        assert set(per_question) == set(asked)  # replies to the questions, nothing else
        assert [q for q in asked if per_question[q] != 1] == []  # each exactly once
        for reply in replies:
            relation = reply["content"]["m.relates_to"]
            assert relation["rel_type"] == "m.thread"
            assert relation["event_id"] == _reply_target(reply)

        final = replied_by()
        with engine.connect() as conn:
            outcomes = Counter(
                conn.scalars(
                    text("SELECT outcome FROM room_events WHERE event_id = ANY(:ids)"),
                    {"ids": asked},
                )
            )
            reply_states = Counter(conn.scalars(text("SELECT state FROM replies")))
        print(
            f"\nworkers: {N_QUESTIONS} questions from {USERS} users; {victim} SIGKILLed after "
            f"{sum(at_kill.values())} replies ({dict(at_kill)}) holding {len(in_hand)} claims; "
            f"replies by worker {dict(final)}; outcomes {dict(outcomes)}; all answered "
            f"{all_answered_s:.1f} s after the first send ({time.monotonic() - killed_at:.1f} s "
            f"after the kill, settle included)"
        )
        assert final[victim] > 0 and final[survivor] > 0  # both did part of the work
        assert final[victim] == at_kill[victim]  # the dead one did nothing more
        assert set(outcomes) <= {"replied", "already-replied"}
        assert sum(outcomes.values()) == N_QUESTIONS
        assert reply_states == {"sent": N_QUESTIONS}
        survivor_log = bots[survivor].log()
        if in_hand:  # the victim died holding claims: the survivor took them over
            with engine.connect() as conn:
                holders = set(
                    conn.scalars(
                        text("SELECT claimed_by FROM room_events WHERE event_id = ANY(:ids)"),
                        {"ids": in_hand},
                    )
                )
            assert holders == {survivor}
            assert "whose lease ran out" in survivor_log
        assert bots[survivor].stop() == 0
    finally:
        for bot in bots.values():
            if bot.proc is not None and bot.proc.poll() is None:
                bot.proc.kill()
                bot.proc.wait()
        engine.dispose()
        postgres.drop_database("workers_e2e")
