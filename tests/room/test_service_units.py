"""bot.room units: Backoff, txn ids, RoomService's decisions with an in-memory transport.

The transport and the answerer are small fakes here (a real RoomStore on SQLite is used); the
real homeserver behaviour is covered end to end against Synapse in tests/room/test_room_service.py.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.answering.render import markdown_to_html
from bot.answering.reply import Source, SuggestedReply
from bot.chat.events import PowerLevels, RoomEvent
from bot.chat.transport import OutgoingReply, SyncBatch
from bot.errors import FatalError, TransientError
from bot.gitter_client import MatrixForbiddenError, MessageRejectedError
from bot.room.handler import UNSURE_QUEUED, UNSURE_REPLY
from bot.room.mentions import MENTION_NOTICES
from bot.room.outcome import Outcome
from bot.room.replies import notice_txn_id_for, txn_id_for
from bot.room.service import RoomService
from bot.room.timing import Backoff
from bot.settings import load_settings
from bot.store.database import Database
from bot.store.models import RoomEventRow
from bot.store.room_claims import DEFERRED
from bot.store.room_store import RoomStore

T = TypeVar("T")
BOT = "@keras-bot:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
ROOM = "!room:example.org"
ANSWER_MD = (
    "This looks covered by **Saving models**:\n\n"
    "1. [Saving models](https://keras.io/api/models/model_saving_apis/) — use `model.save()`"
)


# --- Backoff and transaction ids -----------------------------------------------------------------
def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    backoff = Backoff(1.0, 10.0, rng=random.Random(7))
    reference = random.Random(7)
    delays = [backoff.next_delay() for _ in range(8)]
    capped = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]
    assert delays == [c * reference.uniform(0.5, 1.0) for c in capped]
    for delay, cap in zip(delays, capped, strict=True):
        assert 0.5 * cap <= delay <= cap
    assert backoff.failures == 8


def test_backoff_jitter_bounds_over_many_draws() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(0))
    for n in range(200):
        cap = min(4.0, 0.5 * 2**n)
        assert 0.5 * cap <= backoff.next_delay() <= cap


def test_backoff_reset() -> None:
    backoff = Backoff(2.0, 100.0, rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.failures == 0
    assert 1.0 <= backoff.next_delay() <= 2.0


def test_backoff_default_rng() -> None:
    delay = Backoff(1.0, 1.0).next_delay()
    assert 0.5 <= delay <= 1.0


def test_backoff_survives_a_long_outage() -> None:
    # About 1024 failed syncs at up to 60 s each: a half-day homeserver outage.
    backoff = Backoff(1.0, 60.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(1100)]
    assert 30.0 <= delays[-1] <= 60.0


def test_txn_id_for() -> None:
    first = txn_id_for("$abc:example.org")
    assert first == txn_id_for("$abc:example.org")  # stable across calls and restarts
    assert first != txn_id_for("$abd:example.org")
    assert re.fullmatch(r"supportbot-[0-9a-f]{40}", first)
    assert len(first) <= 128  # the replies.txn_id column
    assert re.fullmatch(r"supportbot-[0-9a-f]{40}", txn_id_for("$ü/../?#%"))


# --- fakes ---------------------------------------------------------------------------------------
class FakeTransport:
    """An in-memory ChatTransport: records what it is asked to send, fails on request."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.user_id = BOT
        self.display_name: str | None = None
        self.power_levels: dict[str, PowerLevels] = {}
        self.failures = list(failures or [])
        self.attempts: list[OutgoingReply] = []
        self.sent: list[OutgoingReply] = []
        self.batches: list[SyncBatch] = []
        self.on_sent: Callable[[], None] | None = None
        self.closed = False

    async def connect(self) -> None:
        return None

    async def sync(self, since: str | None) -> SyncBatch:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(0.01)
        return SyncBatch(next_token=since or "s0")

    async def send_reply(self, reply: OutgoingReply) -> str:
        self.attempts.append(reply)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(reply)
        if self.on_sent is not None:
            self.on_sent()
        return f"$reply{len(self.sent)}"

    async def close(self) -> None:
        self.closed = True


class FakeAnswer:
    """The retrieval step: returns a real SuggestedReply, remembers questions and threads."""

    def __init__(self, *, confident: bool = True, delay: float = 0.0) -> None:
        self.confident = confident
        self.delay = delay
        self.questions: list[str] = []
        self.threads: list[str] = []

    def __call__(self, text: str) -> SuggestedReply:
        self.questions.append(text)
        self.threads.append(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        source = Source(
            doc_id="keras-io:api/models/model_saving_apis",
            title="Saving models",
            url="https://keras.io/api/models/model_saving_apis/",
            section="",
            excerpt="use model.save()",
            score=0.8,
        )
        return SuggestedReply(
            question=text,
            markdown=ANSWER_MD if self.confident else "I'm not sure the docs answer this",
            confidence=0.9 if self.confident else 0.2,
            threshold=0.6,
            would_reply=self.confident,
            sources=[source],
            index_version="v-test",
        )


def event(
    event_id: str = "$q1",
    body: str = "keras-bot: how do I save a model?",
    *,
    sender: str = ALICE,
    mentions: tuple[str, ...] | None = None,
    msgtype: str | None = "m.text",
    rel_type: str | None = None,
    relates_to: str | None = None,
    in_reply_to: str | None = None,
    origin: str = "live",
    ts: int = 1,
) -> RoomEvent:
    if mentions is None:
        mentions = (BOT,) if "keras-bot" in body else ()
    return RoomEvent(
        room_id=ROOM,
        event_id=event_id,
        sender=sender,
        origin_ts=ts,
        event_type="m.room.message",
        msgtype=msgtype,
        body=body,
        rel_type=rel_type,
        relates_to=relates_to,
        in_reply_to=in_reply_to,
        mentions=mentions,
        origin=origin,
    )


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoomStore]:
    monkeypatch.chdir(tmp_path)  # no stray .env or supportbot.toml
    db = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    db.create_schema()
    yield RoomStore(db)
    db.close()


ServiceFactory = Callable[..., RoomService]


@pytest.fixture
def make_service(store: RoomStore, tmp_path: Path) -> Iterator[ServiceFactory]:
    executors: list[ThreadPoolExecutor] = []

    def factory(
        transport: FakeTransport | None = None,
        answer: Callable[[str], SuggestedReply] | None = None,
        **settings: Any,
    ) -> RoomService:
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "backoff_initial_seconds": 0.001,
            "backoff_max_seconds": 0.004,
        }
        values.update(settings)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answer-test")
        executors.append(executor)
        return RoomService(
            load_settings(**values),
            transport or FakeTransport(),
            store,
            answer or FakeAnswer(),
            executor=executor,
        )

    yield factory
    for executor in executors:
        executor.shutdown(wait=True, cancel_futures=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def handle(service: RoomService, *events: RoomEvent) -> list[str | None]:
    """Persist the events (as the reader does) and handle them in order, in one loop."""
    service.store.persist_batch(events, None)

    async def go() -> list[str | None]:
        return [await outcome_of(service, e) for e in events]

    return run(go())


def code_of(outcome: Outcome | None) -> str | None:
    """An outcome as the database stores it; None: stopped mid-send."""
    return None if outcome is None else outcome.code


async def outcome_of(service: RoomService, e: RoomEvent) -> str | None:
    """What handling ``e`` came to, as stored (``Outcome.code``)."""
    return code_of(await service.handler.handle(e))


def transport_of(service: RoomService) -> FakeTransport:
    assert isinstance(service.transport, FakeTransport)
    return service.transport


# --- replying ------------------------------------------------------------------------------------
def test_mention_gets_exactly_one_reply(make_service: ServiceFactory, store: RoomStore) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer)
    assert handle(service, event()) == ["replied"]
    assert transport_of(service).sent == [
        OutgoingReply(
            room_id=ROOM,
            reply_to="$q1",
            thread_root="$q1",
            body=ANSWER_MD,
            formatted_body=markdown_to_html(ANSWER_MD),
            txn_id=txn_id_for("$q1"),
            mention=ALICE,
        )
    ]
    assert answer.questions == ["how do I save a model?"]
    assert service.replies_sent == 1
    reply = store.reply("$q1")
    assert reply is not None and reply.state == "sent" and reply.reply_event_id == "$reply1"
    question = store.question("$q1")
    assert question is not None
    assert question.status == "answered_bot" and question.mentioned is True
    assert question.confidence == 0.9 and question.index_version == "v-test"
    assert question.sources[0]["url"] == "https://keras.io/api/models/model_saving_apis/"


def test_formatted_body_is_html_of_the_body(make_service: ServiceFactory) -> None:
    service = make_service()
    handle(service, event())
    [sent] = transport_of(service).sent
    assert sent.formatted_body == markdown_to_html(sent.body)
    assert "<strong>Saving models</strong>" in sent.formatted_body
    assert '<a href="https://keras.io/api/models/model_saving_apis/">' in sent.formatted_body


def test_threaded_mention_replies_in_the_thread(make_service: ServiceFactory) -> None:
    service = make_service()
    threaded = event("$q2", rel_type="m.thread", relates_to="$root")
    assert handle(service, threaded) == ["replied"]
    [sent] = transport_of(service).sent
    assert (sent.thread_root, sent.reply_to) == ("$root", "$q2")


def test_mention_by_name_only(make_service: ServiceFactory) -> None:
    service = make_service()
    assert handle(service, event(body="keras-bot how do I save a model?", mentions=())) == [
        "replied"
    ]


def test_same_event_twice_replies_once(make_service: ServiceFactory) -> None:
    service = make_service()
    e = event()
    store = service.store
    store.persist_batch([e], None)

    async def twice() -> list[str | None]:
        return [await outcome_of(service, e), await outcome_of(service, e)]

    assert run(twice()) == ["replied", "already-replied"]
    assert len(transport_of(service).attempts) == 1
    # A restarted service (new limiter, new transport) does not reply again either.
    restarted = make_service()
    assert run(outcome_of(restarted, e)) == "already-replied"
    assert transport_of(restarted).attempts == []


def test_rehandled_question_keeps_its_answered_status(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service()
    assert handle(service, event()) == ["replied"]
    assert run(outcome_of(make_service(), event())) == "already-replied"
    question = store.question("$q1")
    assert question is not None and question.status == "answered_bot"


def test_crash_after_claim_resends_with_the_same_txn_id(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    crashing = make_service(FakeTransport(failures=[RuntimeError("killed mid-send")]))
    e = event()
    store.persist_batch([e], None)
    with pytest.raises(RuntimeError, match="killed mid-send"):
        run(outcome_of(crashing, e))
    [first_try] = transport_of(crashing).attempts
    assert [r.question_event_id for r in store.pending_replies()] == ["$q1"]

    restarted = make_service()
    # The pending claim is itself a reply to Alice within the (default 30 s) cooldown, but the
    # cooldown is not applied to a claim made before the crash.
    assert restarted.holds.limiter.check(ROOM, ALICE) == "user-cooldown"
    assert run(outcome_of(restarted, e)) == "replied"
    [resent] = transport_of(restarted).sent
    assert resent.txn_id == first_try.txn_id == txn_id_for("$q1")
    assert resent == first_try
    assert store.pending_replies() == []


def test_pending_claim_is_sent_as_claimed(make_service: ServiceFactory, store: RoomStore) -> None:
    e = event()
    store.persist_batch([e], None)
    store.claim_reply(
        question_event_id="$q1",
        room_id=ROOM,
        txn_id=txn_id_for("$q1"),
        body="the earlier answer",
        formatted_body="<p>the earlier answer</p>",
        thread_root="$q1",
    )
    service = make_service()
    assert run(outcome_of(service, e)) == "replied"
    [sent] = transport_of(service).sent
    assert (sent.body, sent.formatted_body) == ("the earlier answer", "<p>the earlier answer</p>")
    assert sent.txn_id == txn_id_for("$q1")


def test_transient_send_errors_are_retried(make_service: ServiceFactory) -> None:
    transport = FakeTransport(failures=[TransientError("502"), TransientError("timeout")])
    service = make_service(transport)
    assert handle(service, event()) == ["replied"]
    assert len(transport.attempts) == 3
    assert len({r.txn_id for r in transport.attempts}) == 1
    assert len(transport.sent) == 1
    assert service.replies_sent == 1


def test_stop_while_retrying_leaves_the_claim_pending(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    transport = FakeTransport(failures=[TransientError("down")] * 5)
    service = make_service(transport)
    service.request_stop()
    assert handle(service, event()) == [None]
    assert len(transport.attempts) == 1
    assert [r.question_event_id for r in store.pending_replies()] == ["$q1"]
    assert service.replies_sent == 0


def test_fatal_send_error_propagates(make_service: ServiceFactory) -> None:
    transport = FakeTransport(failures=[MatrixForbiddenError("send: M_FORBIDDEN")])
    service = make_service(transport)
    with pytest.raises(FatalError):
        handle(service, event())
    assert len(transport.attempts) == 1


def test_rejected_message_does_not_stop_the_service(make_service: ServiceFactory) -> None:
    # e.g. M_TOO_LARGE: that one message cannot go, others still may (gitter_client docstring).
    transport = FakeTransport(failures=[MessageRejectedError("send: M_TOO_LARGE event too large")])
    service = make_service(transport)
    [outcome] = handle(service, event())
    assert isinstance(outcome, str)
    assert len(transport.attempts) == 1


@pytest.mark.parametrize("setting", [{}, {"unsure_reply": "auto"}], ids=["default", "auto"])
def test_below_threshold_mention_gets_the_closest_pages_marked_unsure(
    make_service: ServiceFactory, store: RoomStore, setting: dict[str, str]
) -> None:
    # A Matrix-like transport (no local room): a mention is a request, it gets the pages.
    service = make_service(answer=FakeAnswer(confident=False), **setting)
    assert handle(service, event()) == ["replied:unsure"]
    [sent] = transport_of(service).sent
    assert sent.body.startswith("I'm not sure the docs answer this")
    assert sent.body.endswith(UNSURE_QUEUED)
    question = store.question("$q1")
    assert question is not None and question.status == "new"  # not counted as answered


def test_operator_can_keep_the_unsure_reply_to_the_note(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(answer=FakeAnswer(confident=False), unsure_reply="note")
    assert handle(service, event()) == ["replied:unsure"]
    [sent] = transport_of(service).sent
    assert sent.body == UNSURE_REPLY
    assert sent.formatted_body == markdown_to_html(UNSURE_REPLY)
    question = store.question("$q1")
    assert question is not None and question.status == "new"  # still for the maintainers


def test_unsure_mention_without_any_source_gets_the_note(make_service: ServiceFactory) -> None:
    def nothing(text: str) -> SuggestedReply:
        return SuggestedReply(text, "I couldn't find anything", 0.0, 0.6, False, [], "v-test")

    service = make_service(answer=nothing)
    assert handle(service, event()) == ["replied:unsure"]
    [sent] = transport_of(service).sent
    assert sent.body == UNSURE_REPLY


def held(store: RoomStore, event_id: str) -> tuple[str | None, str | None, datetime | None]:
    """(outcome, claimed_by, claimed_until) of an event's row."""
    with store.db.session() as s:
        row = s.get(RoomEventRow, event_id)
        assert row is not None
        return row.outcome, row.claimed_by, row.claimed_until


def test_mention_inside_the_cooldown_waits_for_it(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(user_cooldown_seconds=30.0)
    outcomes = handle(
        service,
        event("$a1"),
        event("$a2", body="keras-bot: and how do I load it?"),
        event("$b1", sender=BOB),
    )
    assert outcomes == ["replied", "deferred:user-cooldown:1", "replied"]
    assert [r.reply_to for r in transport_of(service).sent] == ["$a1", "$b1"]
    assert store.reply("$a2") is None  # not claimed yet
    # Stored as due when Alice's cooldown ends: any worker, or this one after a restart,
    # picks it up then.
    first = store.reply("$a1")
    assert first is not None
    outcome, holder, until = held(store, "$a2")
    assert (outcome, holder) == ("deferred:user-cooldown:1", DEFERRED)
    assert until == first.created_at + timedelta(seconds=30)
    question = store.question("$a2")
    assert question is not None and question.status == "suggested"  # on the dashboard meanwhile


def test_unmentioned_question_inside_the_cooldown_stays_suppressed(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(user_cooldown_seconds=30.0, reply_to_unmentioned=True)
    outcomes = handle(service, event("$a1"), event("$a2", body="how do I load a model?"))
    assert outcomes == ["replied", "suppressed:user-cooldown"]
    assert [r.reply_to for r in transport_of(service).sent] == ["$a1"]
    assert held(store, "$a2")[1] != DEFERRED


def test_room_rate_limit_defers_mentions_until_the_window_frees(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(user_cooldown_seconds=0.0, room_replies_per_minute=1)
    outcomes = handle(service, event("$a1"), event("$b1", sender=BOB))
    assert outcomes == ["replied", "deferred:room-rate-limit:1"]
    first = store.reply("$a1")
    assert first is not None
    assert held(store, "$b1")[2] == first.created_at + timedelta(seconds=60)


def test_a_mention_flood_is_told_once_why_not(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(user_cooldown_seconds=30.0, deferred_mentions_per_user=1)
    mentions = [event(f"$a{n}", body=f"keras-bot: question {n}?", ts=n) for n in range(1, 6)]
    outcomes = handle(service, *mentions)
    assert outcomes == [
        "replied",
        "deferred:user-cooldown:1",
        "notice:too-many-waiting",
        "suppressed:user-cooldown:told-already",  # one notice per cooldown: no spam
        "suppressed:user-cooldown:told-already",
    ]
    sent = transport_of(service).sent
    assert [r.reply_to for r in sent] == ["$a1", "$a3"]
    notice = sent[1]
    assert notice.body == MENTION_NOTICES["too-many-waiting"]
    assert (notice.thread_root, notice.mention) == ("$a3", ALICE)
    assert notice.txn_id == notice_txn_id_for("$a3") != txn_id_for("$a3")
    assert store.reply("$a3") is None  # a notice is not the question's reply
    question = store.question("$a3")
    # Queued for the maintainers, without a suggestion: a mention held back runs no model.
    assert question is not None and question.status == "new" and question.suggestion is None
    # Another asker is not affected by Alice's flood.
    assert handle(service, event("$b1", sender=BOB)) == ["replied"]


def test_a_full_room_wait_is_told_to_the_next_mention(make_service: ServiceFactory) -> None:
    service = make_service(user_cooldown_seconds=0.0, room_replies_per_minute=1)
    users = [f"@user{n}:example.org" for n in range(3)]
    outcomes = handle(service, *[event(f"$u{n}", sender=u, ts=n) for n, u in enumerate(users)])
    # One reply a minute: one mention may wait (a minute's worth), the next is told.
    assert outcomes == ["replied", "deferred:room-rate-limit:1", "notice:room-busy"]
    assert transport_of(service).sent[-1].body == MENTION_NOTICES["room-busy"]


def test_a_notice_decided_before_a_crash_is_resent_not_redecided(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    crashing = make_service(
        FakeTransport(failures=[RuntimeError("killed mid-send")]), deferred_mentions_per_user=0
    )
    store.persist_batch([event("$a0", ts=0)], None)
    assert run(outcome_of(make_service(), event("$a0", ts=0))) == "replied"
    e = event("$a1", ts=1)
    store.persist_batch([e], None)
    with pytest.raises(RuntimeError, match="killed mid-send"):
        run(outcome_of(crashing, e))
    # Restarted without any limit: the decision stands, the same notice goes once.
    restarted = make_service(user_cooldown_seconds=0.0)
    assert run(outcome_of(restarted, e)) == "notice:too-many-waiting"
    [resent] = transport_of(restarted).sent
    assert resent == transport_of(crashing).attempts[0]
    assert store.reply("$a1") is None


def test_a_waiting_mention_answered_by_a_person_meanwhile_gets_no_reply(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    service = make_service(user_cooldown_seconds=30.0)
    assert handle(service, event("$a1"), event("$a2", ts=2)) == [
        "replied",
        "deferred:user-cooldown:1",
    ]
    store.set_question_status("$a2", "answered_person")
    assert run(outcome_of(make_service(user_cooldown_seconds=0.0), event("$a2", ts=2))) == (
        "answered-meanwhile"
    )


def test_the_limits_are_checked_before_inference(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    """A mention the limits hold back without deferring it (told why, or told already) costs
    no model time, so a flood of mentions queues no CPU work; each still reaches the
    dashboard's queue. A deferred one gets its suggestion while it waits."""
    answer = FakeAnswer()
    service = make_service(answer=answer, user_cooldown_seconds=30.0, deferred_mentions_per_user=1)
    mentions = [event(f"$a{n}", body=f"keras-bot: question {n}?", ts=n) for n in range(1, 6)]
    outcomes = handle(service, *mentions)
    assert outcomes == [
        "replied",
        "deferred:user-cooldown:1",
        "notice:too-many-waiting",
        "suppressed:user-cooldown:told-already",
        "suppressed:user-cooldown:told-already",
    ]
    assert answer.questions == ["question 1?", "question 2?"]
    deferred = store.question("$a2")
    assert deferred is not None and deferred.status == "suggested"
    for n in range(3, 6):
        question = store.question(f"$a{n}")
        assert question is not None and question.status == "new"
        assert (question.suggestion, question.confidence) == (None, None)
        assert store.reply(f"$a{n}") is None


# --- not replying --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("e", "outcome"),
    [
        (event(sender=BOT), "ignored:own-message"),
        (event(msgtype="m.notice"), "ignored:notice"),
        (event(rel_type="m.replace", relates_to="$orig"), "ignored:edit"),
        (event(msgtype="m.image", body="keras-bot.png"), "ignored:not-text"),
        (event(body="   "), "ignored:empty"),
        (event(sender="@otherbot:example.org"), "ignored:ignored-user"),
    ],
    ids=["own", "notice", "edit", "image", "empty", "ignored-user"],
)
def test_ignored_events(make_service: ServiceFactory, e: RoomEvent, outcome: str) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer, ignore_users="@otherbot:example.org")
    assert handle(service, e) == [outcome]
    assert transport_of(service).attempts == []
    assert answer.questions == []
    assert service.store.question(e.event_id) is None


def test_unmentioned_question_goes_to_triage(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer)
    assert handle(service, event(body="how do I save a model?")) == ["triage"]
    assert transport_of(service).attempts == []
    assert answer.questions == ["how do I save a model?"]
    question = store.question("$q1")
    assert question is not None and question.mentioned is False and question.status == "suggested"


def test_unmentioned_question_replied_when_configured(make_service: ServiceFactory) -> None:
    service = make_service(reply_to_unmentioned=True)
    assert handle(service, event(body="how do I save a model?")) == ["replied"]
    [sent] = transport_of(service).sent
    assert sent.mention == ALICE


def test_unmentioned_low_confidence_is_not_replied(make_service: ServiceFactory) -> None:
    service = make_service(answer=FakeAnswer(confident=False), reply_to_unmentioned=True)
    assert handle(service, event(body="how do I save a model?")) == ["triage:low-confidence"]
    assert transport_of(service).attempts == []


@pytest.mark.parametrize(
    "e",
    [
        event(body="thanks, that worked"),
        event(body="how do I save a model?", rel_type="m.thread", relates_to="$root"),
        event(body="how do I save a model?", in_reply_to="$other"),
    ],
    ids=["statement", "question-in-thread", "question-as-reply"],
)
def test_not_a_question(make_service: ServiceFactory, e: RoomEvent) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer, reply_to_unmentioned=True)
    assert handle(service, e) == ["not-a-question"]
    assert answer.questions == []
    assert transport_of(service).attempts == []


def test_history_is_triaged_never_replied(make_service: ServiceFactory, store: RoomStore) -> None:
    service = make_service(reply_to_unmentioned=True)
    assert handle(service, event(origin="history")) == ["history"]
    assert transport_of(service).attempts == []
    question = store.question("$q1")
    assert question is not None and question.mentioned is True
    assert store.reply("$q1") is None


def test_gap_events_are_answered(make_service: ServiceFactory) -> None:
    service = make_service()
    assert handle(service, event(origin="gap")) == ["replied"]


def test_short_mention_in_reply_asks_the_quoted_question(make_service: ServiceFactory) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer)
    quoted = event("$orig", body="how do I freeze layers when fine-tuning?", sender=BOB)
    ping = event(
        "$ping",
        body="> <@bob:example.org> how do I freeze layers when fine-tuning?\n\nkeras-bot ?",
        in_reply_to="$orig",
        ts=2,
    )
    service.store.persist_batch([quoted], None)
    assert handle(service, ping) == ["replied"]
    assert answer.questions == ["how do I freeze layers when fine-tuning?"]
    [sent] = transport_of(service).sent
    assert (sent.reply_to, sent.mention) == ("$ping", ALICE)


def test_thanks_in_reply_to_the_bot_does_not_requery_its_own_answer(
    make_service: ServiceFactory,
) -> None:
    # Clients put the replied-to sender in m.mentions, so "thanks!" to the bot is a mention.
    answer = FakeAnswer()
    service = make_service(answer=answer)
    bot_reply = event("$bot-reply", body=ANSWER_MD, sender=BOT, msgtype="m.notice", mentions=())
    thanks = event(
        "$thanks",
        body=f"> <{BOT}> This looks covered by **Saving models**:\n\nthanks!",
        mentions=(BOT,),
        in_reply_to="$bot-reply",
        ts=2,
    )
    assert handle(service, bot_reply, thanks)[0] == "ignored:own-message"
    assert all("Saving models" not in q for q in answer.questions), answer.questions


def test_short_mention_in_reply_to_an_unknown_event(make_service: ServiceFactory) -> None:
    answer = FakeAnswer()
    service = make_service(answer=answer)
    ping = event("$ping", body="keras-bot ?", in_reply_to="$not-stored")
    assert handle(service, ping) == ["replied"]
    assert answer.questions == ["?"]


# --- the event loop stays free -------------------------------------------------------------------
def test_slow_answer_runs_in_the_executor(make_service: ServiceFactory) -> None:
    answer = FakeAnswer(delay=0.3)
    service = make_service(answer=answer)
    e = event()
    service.store.persist_batch([e], None)
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def go() -> str | None:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        try:
            return await outcome_of(service, e)
        finally:
            stop.set()
            await task

    assert run(go()) == "replied"
    assert ticks >= 10  # ~30 possible while the answerer slept in its thread
    assert answer.threads[0].startswith("answer-test")
    assert answer.threads[0] != threading.main_thread().name


# --- the whole service, briefly ------------------------------------------------------------------
def wait_for(
    check: Callable[[], bool], what: str, timeout: float = 30.0
) -> Coroutine[Any, Any, None]:
    async def waiting() -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    return waiting()


def test_two_mentions_inside_the_cooldown_are_both_answered_the_second_when_it_ends(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    transport = FakeTransport()
    service = make_service(transport, user_cooldown_seconds=1.0)
    first = event("$a1", ts=1)
    second = event("$a2", body="keras-bot: and how do I load it?", ts=2)
    transport.batches = [SyncBatch(next_token="s1", events=(first,))]

    async def scenario() -> None:
        running = asyncio.create_task(service.run())
        try:
            await wait_for(lambda: len(transport.sent) == 1, "the first reply")
            transport.batches.append(SyncBatch(next_token="s2", events=(second,)))
            await wait_for(lambda: len(transport.sent) == 2, "the second reply")
        finally:
            service.request_stop()
            await asyncio.wait_for(running, timeout=10)

    run(scenario())
    assert [r.reply_to for r in transport.sent] == ["$a1", "$a2"]
    one, two = store.reply("$a1"), store.reply("$a2")
    assert one is not None and two is not None
    # Claimed only once the cooldown had passed: deferred, not dropped, and not early.
    assert two.created_at >= one.created_at + timedelta(seconds=1.0)
    assert held(store, "$a2")[0] == "replied" and store.unhandled() == []


def test_a_deferred_mention_survives_a_restart_and_is_answered_once(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    before = make_service(user_cooldown_seconds=1.0)
    outcomes = handle(before, event("$a1", ts=1), event("$a2", ts=2))
    assert outcomes == ["replied", "deferred:user-cooldown:1"]
    # That process is gone (its timer with it); a new one starts on the same database.
    transport = FakeTransport()
    after = make_service(transport, user_cooldown_seconds=1.0, claim_lease_seconds=2.0)

    async def scenario() -> None:
        running = asyncio.create_task(after.run())
        try:
            await wait_for(lambda: len(transport.sent) == 1, "the deferred mention's reply")
            await wait_for(lambda: not store.unhandled(), "the mention marked handled")
        finally:
            after.request_stop()
            await asyncio.wait_for(running, timeout=10)

    run(scenario())
    assert [r.reply_to for r in transport_of(before).sent] == ["$a1"]
    assert [r.reply_to for r in transport.sent] == ["$a2"]
    # A third start finds nothing left to do for it.
    assert run(outcome_of(make_service(), event("$a2", ts=2))) == "already-replied"


def test_run_handles_persisted_and_synced_events(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    transport = FakeTransport()
    service = make_service(transport, user_cooldown_seconds=0.0)
    # Persisted before a crash, never handled: handled at start.
    leftover = event("$left", ts=1)
    store.persist_batch([leftover], "s1")
    # Then one live batch from /sync, with a duplicate of the leftover.
    live = event("$live", sender=BOB, ts=2)
    transport.batches = [SyncBatch(next_token="s2", events=(leftover, live))]

    def stop_after_two() -> None:
        if len(transport.sent) == 2:
            service.request_stop()

    transport.on_sent = stop_after_two
    run(asyncio.wait_for(service.run(), timeout=10))
    assert sorted(r.reply_to for r in transport.sent) == ["$left", "$live"]
    assert transport.closed
    assert store.sync_token() == "s2"
    # Both marked handled after their replies; nothing is re-handled on the next start.
    assert store.unhandled() == []


# --- first-time askers ---------------------------------------------------------------------------
WELCOME = "Welcome! Docs: https://keras.io/api/"


def test_a_first_time_asker_is_welcomed_once(make_service: ServiceFactory) -> None:
    service = make_service(welcome_newcomers=True, welcome_line=WELCOME, user_cooldown_seconds=0)
    first = event("$q1", "keras-bot: how do I save a model?", ts=1)
    second = event("$q2", "keras-bot: and how do I load it again?", ts=2)
    assert handle(service, first, second) == ["replied", "replied"]
    one, two = transport_of(service).sent
    assert one.body == f"{WELCOME}\n\n{ANSWER_MD}"
    assert two.body == ANSWER_MD  # not their first message any more


def test_someone_who_posted_before_is_not_welcomed(make_service: ServiceFactory) -> None:
    service = make_service(welcome_newcomers=True, welcome_line=WELCOME)
    hello = event("$hi", "hello everyone", ts=1)
    question = event("$q1", "keras-bot: how do I save a model?", ts=2)
    handle(service, hello, question)
    [sent] = transport_of(service).sent
    assert sent.body == ANSWER_MD


def test_maintainers_and_the_default_get_no_welcome(make_service: ServiceFactory) -> None:
    maintainer = make_service(welcome_newcomers=True, welcome_line=WELCOME, maintainers=ALICE)
    handle(maintainer, event("$q1", ts=1))
    off = make_service()  # off by default
    handle(off, event("$q2", "keras-bot: how do I freeze layers?", sender=BOB, ts=2))
    assert [s.body for s in transport_of(maintainer).sent] == [ANSWER_MD]
    assert [s.body for s in transport_of(off).sent] == [ANSWER_MD]


# --- asking for what is missing, then answering again once ---------------------------------------
CRASH = "keras-bot: my training crashes with TypeError: unsupported operand type(s) for +"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 12, in <module>\n'
    "    model.fit(x, y)\n"
    "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'"
)


def in_thread(event_id: str, body: str, *, sender: str = ALICE, ts: int = 2) -> RoomEvent:
    return event(event_id, body, sender=sender, rel_type="m.thread", relates_to="$q1", ts=ts)


def test_the_askers_traceback_in_the_thread_gets_one_more_answer(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    answer = FakeAnswer(confident=False)
    service = make_service(answer=answer, user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=2),
        in_thread("$f2", f"and again:\n```\n{TRACEBACK}\n```", ts=3),
    )
    assert outcomes == ["replied:unsure", "replied:unsure", "not-a-question"]
    first, again = transport_of(service).sent
    assert (first.reply_to, first.thread_root) == ("$q1", "$q1")
    assert (again.reply_to, again.thread_root, again.mention) == ("$f1", "$q1", ALICE)
    # The second answer is on the question and the traceback together.
    assert (
        answer.questions[1].startswith("my training crashes") and TRACEBACK in answer.questions[1]
    )
    assert store.bot_followed_up("$q1", ALICE) and not store.bot_followed_up("$other", ALICE)
    assert not store.bot_followed_up("$q1", BOB)  # only the asker's follow-ups count


def test_an_answer_to_someone_elses_question_in_the_thread_leaves_the_askers_follow_up(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    """Bob asks the bot his own question inside Alice's thread: answering him is not Alice's
    one follow-up, so her traceback afterwards still gets its second answer."""
    service = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$b1", "keras-bot: how do I freeze layers for fine-tuning?", sender=BOB, ts=2),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=3),
        in_thread("$f2", f"and again:\n```\n{TRACEBACK}\n```", ts=4),
    )
    assert outcomes == ["replied:unsure", "replied:unsure", "replied:unsure", "not-a-question"]
    _first, to_bob, again = transport_of(service).sent
    assert (to_bob.reply_to, to_bob.thread_root, to_bob.mention) == ("$b1", "$q1", BOB)
    assert (again.reply_to, again.thread_root, again.mention) == ("$f1", "$q1", ALICE)
    assert store.bot_followed_up("$q1", ALICE) and not store.bot_followed_up("$b1", BOB)


def test_an_edit_of_a_question_asked_in_someone_elses_thread_is_answered_once(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    """Bob's question lives in Alice's thread; his edit that adds the traceback is answered
    there, in reply to his question, once; Alice's own follow-up is still hers."""
    answer = FakeAnswer(confident=False)
    service = make_service(answer=answer, user_cooldown_seconds=0)
    bobs = in_thread("$b1", CRASH, sender=BOB, ts=2)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        bobs,
        edit_of("$e1", EDITED, sender=BOB, question="$b1", ts=3),
        edit_of("$e2", f"{EDITED}\nplease", sender=BOB, question="$b1", ts=4),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=5),
    )
    assert outcomes == [
        "replied:unsure",
        "replied:unsure",
        "replied:unsure:edit",
        "ignored:edit",
        "replied:unsure",
    ]
    _first, _to_bob, bob_again, alice_again = transport_of(service).sent
    assert (bob_again.reply_to, bob_again.thread_root, bob_again.mention) == ("$b1", "$q1", BOB)
    assert (alice_again.reply_to, alice_again.mention) == ("$f1", ALICE)
    assert TRACEBACK in answer.questions[2]
    assert store.bot_followed_up("$b1", BOB) and store.bot_followed_up("$q1", ALICE)


def test_the_note_alone_also_asks_and_its_follow_up_is_answered(
    make_service: ServiceFactory,
) -> None:
    service = make_service(
        answer=FakeAnswer(confident=False), unsure_reply="note", user_cooldown_seconds=0
    )
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=2),
    )
    assert outcomes == ["replied:unsure", "replied:unsure"]
    first, _again = transport_of(service).sent
    assert first.body.startswith(UNSURE_REPLY)
    assert (
        "\n\nTo help, add: " in first.body and "the full traceback of the TypeError" in first.body
    )
    assert first.body.endswith("Reply in this thread with it and I'll look again.")


def test_a_confident_answer_to_the_thread_follow_up_marks_the_question_answered(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    answers = iter([FakeAnswer(confident=False), FakeAnswer(confident=True)])
    service = make_service(answer=lambda text: next(answers)(text), user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=2),
    )
    assert outcomes == ["replied:unsure", "replied"]
    question = store.question("$q1")
    assert question is not None and question.status == "answered_bot"


def test_no_second_answer_without_what_was_asked_or_from_someone_else(
    make_service: ServiceFactory,
) -> None:
    service = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", "thanks, I'll try", ts=2),
        in_thread("$f2", f"same here:\n```\n{TRACEBACK}\n```", sender=BOB, ts=3),
    )
    assert outcomes == ["replied:unsure", "not-a-question", "not-a-question"]
    assert len(transport_of(service).sent) == 1


def test_a_confident_answer_asked_for_nothing_so_a_follow_up_is_not_answered(
    make_service: ServiceFactory,
) -> None:
    service = make_service(answer=FakeAnswer(confident=True), user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=2),
    )
    assert outcomes == ["replied", "not-a-question"]


# --- an edit of the question that adds what was asked: answered again, once ---------------------
def edit_of(
    event_id: str,
    body: str,
    *,
    sender: str = ALICE,
    question: str = "$q1",
    ts: int = 3,
    formatted_body: str | None = None,
    origin: str = "live",
) -> RoomEvent:
    """The asker's ``m.replace`` of ``question``; ``body`` is the new text (m.new_content)."""
    edit = event(event_id, body, sender=sender, rel_type="m.replace", relates_to=question, ts=ts)
    return replace(edit, formatted_body=formatted_body, origin=origin)


EDITED = f"{CRASH}\n```\n{TRACEBACK}\n```"


def test_an_edit_held_back_by_the_limits_is_told_why_in_the_questions_thread(
    make_service: ServiceFactory,
) -> None:
    service = make_service(
        answer=FakeAnswer(confident=False),
        user_cooldown_seconds=30.0,
        deferred_mentions_per_user=0,
    )
    outcomes = handle(service, event("$q1", CRASH, ts=1), edit_of("$e1", EDITED, ts=2))
    assert outcomes == ["replied:unsure", "notice:too-many-waiting"]
    _first, notice = transport_of(service).sent
    assert (notice.reply_to, notice.thread_root, notice.mention) == ("$q1", "$q1", ALICE)


def test_the_askers_edit_that_adds_the_traceback_gets_one_more_answer(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    answer = FakeAnswer(confident=False)
    service = make_service(answer=answer, user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        edit_of("$e1", EDITED, ts=2),
        edit_of("$e2", f"{EDITED}\nplease help", ts=3),
        in_thread("$f1", f"here it is again:\n```\n{TRACEBACK}\n```", ts=4),
    )
    assert outcomes == ["replied:unsure", "replied:unsure:edit", "ignored:edit", "not-a-question"]
    first, again = transport_of(service).sent
    # In the question's thread, in reply to the question (an edit is not a message to quote).
    assert (again.reply_to, again.thread_root, again.mention) == ("$q1", "$q1", ALICE)
    assert again.txn_id == txn_id_for("$e1") != first.txn_id
    # On the edited text alone: it replaces the question, so nothing is there twice.
    assert answer.questions[1].startswith("my training crashes")
    assert answer.questions[1].count("unsupported operand") == 2  # the line, the traceback's end
    assert store.bot_followed_up("$q1", ALICE)
    record = store.reply("$e1")
    assert record is not None and (record.thread_root, record.state) == ("$q1", "sent")
    question = store.question("$q1")
    assert question is not None and question.status == "new"  # still unsure: still queued


def test_a_confident_answer_to_the_edit_marks_the_question_answered(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    answers = iter([FakeAnswer(confident=False), FakeAnswer(confident=True)])
    service = make_service(answer=lambda text: next(answers)(text), user_cooldown_seconds=0)
    outcomes = handle(service, event("$q1", CRASH, ts=1), edit_of("$e1", EDITED, ts=2))
    assert outcomes == ["replied:unsure", "replied:edit"]
    question = store.question("$q1")
    assert question is not None and question.status == "answered_bot"


def test_after_a_thread_follow_up_an_edit_gets_nothing(make_service: ServiceFactory) -> None:
    service = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    outcomes = handle(
        service,
        event("$q1", CRASH, ts=1),
        in_thread("$f1", f"here it is:\n```\n{TRACEBACK}\n```", ts=2),
        edit_of("$e1", EDITED, ts=3),
    )
    assert outcomes == ["replied:unsure", "replied:unsure", "ignored:edit"]
    assert len(transport_of(service).sent) == 2


@pytest.mark.parametrize(
    ("edit", "outcome"),
    [
        (edit_of("$e1", f"{CRASH}\nthanks in advance"), "ignored:edit"),  # nothing asked for
        (edit_of("$e1", EDITED, sender=BOB), "ignored:edit"),  # not the asker's edit
        (edit_of("$e1", EDITED, sender=BOT), "ignored:own-message"),
        (edit_of("$e1", EDITED, origin="history"), "ignored:edit"),
        (edit_of("$e1", EDITED, question="$unknown"), "ignored:edit"),
        (replace(edit_of("$e1", EDITED), msgtype="m.notice"), "ignored:edit"),
    ],
    ids=["adds-nothing", "someone-else", "the-bot", "history", "not-a-question", "notice"],
)
def test_other_edits_get_no_answer(
    make_service: ServiceFactory, edit: RoomEvent, outcome: str
) -> None:
    service = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    assert handle(service, event("$q1", CRASH, ts=1), edit) == ["replied:unsure", outcome]
    assert len(transport_of(service).sent) == 1


def test_an_edit_after_a_confident_answer_gets_nothing(make_service: ServiceFactory) -> None:
    service = make_service(answer=FakeAnswer(confident=True), user_cooldown_seconds=0)
    outcomes = handle(service, event("$q1", CRASH, ts=1), edit_of("$e1", EDITED, ts=2))
    assert outcomes == ["replied", "ignored:edit"]


STUCK = "keras-bot: my accuracy is stuck at 0.5 with keras 3.4, why?"
CODE_HTML = "<p>this is what I run:</p><pre><code>model.fit(x, y, epochs=10)\n</code></pre>"


@pytest.mark.parametrize("how", ["thread", "edit"])
def test_a_code_block_only_in_the_html_counts_as_the_code_asked_for(
    make_service: ServiceFactory, how: str
) -> None:
    """A client's rich-text body may hold the code block that its plain body lost."""
    answer = FakeAnswer(confident=False)
    service = make_service(answer=answer, user_cooldown_seconds=0)
    if how == "thread":
        follow = replace(in_thread("$f1", "this is what I run:"), formatted_body=CODE_HTML)
    else:
        follow = edit_of("$e1", f"{STUCK}\nthis is what I run:", formatted_body=CODE_HTML)
    outcomes = handle(service, event("$q1", STUCK, ts=1), follow)
    assert outcomes[1] in ("replied:unsure", "replied:unsure:edit")
    assert len(transport_of(service).sent) == 2


def test_an_edits_reply_left_pending_by_a_crash_is_sent_after_the_restart(
    make_service: ServiceFactory, store: RoomStore
) -> None:
    crashing = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    question, edit = event("$q1", CRASH, ts=1), edit_of("$e1", EDITED, ts=2)
    store.persist_batch([question, edit], None)
    assert run(outcome_of(crashing, question)) == "replied:unsure"
    # Killed while sending the answer to the edit: its claim is left pending.
    transport_of(crashing).failures = [RuntimeError("killed mid-send")]
    with pytest.raises(RuntimeError, match="killed mid-send"):
        run(outcome_of(crashing, edit))
    assert [r.question_event_id for r in store.pending_replies()] == ["$e1"]

    restarted = make_service(answer=FakeAnswer(confident=False), user_cooldown_seconds=0)
    assert run(outcome_of(restarted, edit)) == "replied:unsure:edit"
    [resent] = transport_of(restarted).sent
    assert (resent.reply_to, resent.txn_id) == ("$q1", txn_id_for("$e1"))
    assert run(outcome_of(restarted, edit)) == "already-replied"
